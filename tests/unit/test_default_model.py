"""``scripts/run`` without MODEL: the hub model when the Hub answers, else the bench model, loudly."""

import subprocess
import sys

from engine.offline.default_model import BENCH_DIR, choose, hub_default
from harness.processes import python_env


def test_the_default_is_the_settings_real_sentiment_model():
    assert hub_default() == "distilbert-base-uncased-finetuned-sst-2-english"


def test_the_hub_model_is_served_when_the_hub_answers():
    asked, written = [], []
    choice = choose("some/model", ask=asked.append, fallback=written.append)
    assert choice.model == "some/model" and choice.warning is None
    assert asked == ["some/model"] and not written  # no bench model written


def test_without_the_hub_the_bench_model_is_written_and_the_fallback_said_with_reason_and_fix():
    def unreachable(model: str) -> None:
        raise ConnectionError("Name or service not known")

    written = []
    choice = choose("some/model", ask=unreachable, fallback=written.append)
    assert choice.model == str(BENCH_DIR) and written == [BENCH_DIR]
    assert "cannot be reached for some/model (ConnectionError: Name or service not known)" in choice.warning
    assert "RANDOM WEIGHTS" in choice.warning and "Fix:" in choice.warning and "MODEL=" in choice.warning


def test_the_command_prints_only_the_model_on_stdout_and_the_warning_on_stderr(tmp_path, tiny_model):
    # HF_HUB_OFFLINE=1 (the harness's default): the Hub counts as unreachable, as on a machine without it. A model
    # already in models/bench is kept (writing the bench model takes a while), and its message goes to stderr.
    (tmp_path / BENCH_DIR).parent.mkdir()
    (tmp_path / BENCH_DIR).symlink_to(tiny_model)
    done = subprocess.run([sys.executable, "-m", "engine.offline.default_model"], cwd=tmp_path, env=python_env(),
                          capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout == f"{BENCH_DIR}\n"
    assert "OFFLINE BENCH MODEL" in done.stderr and "OfflineModeIsEnabled" in done.stderr
    assert "model already present, kept" in done.stderr
