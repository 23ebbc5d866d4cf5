"""benchmarks.round_trips runs the request path's round trip, the same on redis-py's pool, and the two redis-py ways
beside it."""

import re

from benchmarks.round_trips import main


def test_the_benchmark_measures_each_way_in_each_round(capsys):
    assert main(["--rounds", "2", "--per-task", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("client CPU per push-and-wait, 100 in flight, median of 2 rounds")
    for line, name in zip(lines[1:], ("raw", "raw, redis-py pool", "pipeline", "two commands"), strict=True):
        assert re.fullmatch(rf" +{name}: +[\d.]+ us  \[[\d.]+, [\d.]+\]", line), line
