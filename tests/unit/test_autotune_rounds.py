"""How long BACKEND=auto times a candidate (engine/autotune/probe.py throughput): a round runs enough windows for long
enough, or its share of the probe's time for a slow model, and gives texts per second; on a fake clock, exactly."""

import time

import numpy as np
import pytest

from common.options import Query
from engine.autotune import probe as auto
from engine.autotune.probe import ProbePolicy
from engine.autotune.probe_texts import PROBE_TEXTS
from engine.tokenizing import Tokenizer
from tests.unit.test_autotune_probe import FakeRuntime
from tests.unit.test_tokenizing import FakeHfTokenizer


def test_a_round_lasts_its_share_of_the_probes_time_even_for_a_slow_model():
    """A slow model's round ends when its time is up, however few windows it ran: the rounds of BACKEND=auto must not
    multiply a first start's measuring time (a small model's ends sooner, once it has run enough windows)."""
    from engine.autotune.probe import passes, throughput

    tokenizer = Tokenizer(FakeHfTokenizer(), 64)
    policy = ProbePolicy(window=16, max_batch_tokens=128)
    window = passes(tokenizer.encode([Query(t) for t in PROBE_TEXTS]), policy, 128)
    slow = FakeRuntime("torch", per_text_s=0.01)  # 0.16 s per window of 16 texts
    started = time.perf_counter()
    rate = throughput(slow, tokenizer, window, 16, 0.2)
    # One window to warm up, then windows until 0.2 s have passed: 3 windows, 0.48 s (7 windows would be 1.1 s).
    assert time.perf_counter() - started < 0.8
    assert 16 / 0.2 < rate < 110  # ~100 sentences/s, timed over whole windows


class ClockedRuntime:
    """Each pass takes ``pass_s`` on a fake clock (binary fractions: sums are exact), so a round's length and rate
    are known to the bit."""

    def __init__(self, pass_s):
        self.now, self.pass_s, self.passes = 0.0, pass_s, 0

    def perf_counter(self):
        return self.now

    def logits(self, inputs):
        self.now += self.pass_s
        self.passes += 1
        return np.zeros((len(inputs["input_ids"]), 2), dtype=np.float32)


@pytest.mark.parametrize("pass_s,seconds,enough_s,windows", [
    (1 / 128, 8.0, 0.125, 8),  # 7 windows take 7/64 s < 1/8 s: the 8th ends exactly at 1/8 s
    (1 / 16, 8.0, 0.125, 7),  # 1/8 s passes after 1 window: ENOUGH_ROUND_WINDOWS sets the length
    (1 / 8, 0.75, 0.125, 3),  # a slow model: the round's share of the probe's time ends it, exactly at 3 windows
])
def test_a_round_runs_enough_windows_for_long_enough_then_gives_texts_per_second(monkeypatch, pass_s, seconds,
                                                                                enough_s, windows):
    from types import SimpleNamespace

    assert auto.ENOUGH_ROUND_WINDOWS == 7
    monkeypatch.setattr(auto, "ENOUGH_ROUND_S", enough_s)
    runtime = ClockedRuntime(pass_s)
    monkeypatch.setattr(auto, "time", SimpleNamespace(perf_counter=runtime.perf_counter))
    tokenizer = Tokenizer(FakeHfTokenizer(), 64)
    encodings = tokenizer.encode([Query(text) for text in PROBE_TEXTS[:6]])
    window = [encodings[:4], encodings[4:]]  # 2 passes, 6 texts
    rate = auto.throughput(runtime, tokenizer, window, 6, seconds)
    assert runtime.passes == 2 + 2 * windows  # one warm-up window first, not timed
    assert rate == 6 * windows / (2 * windows * pass_s)
