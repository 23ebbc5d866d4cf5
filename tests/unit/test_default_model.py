"""``scripts/run`` without MODEL: the hub model when the Hub answers, else the bench model, loudly."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.model_source import ModelSource
from engine.offline.default_model import BENCH_DIR, choose, hub_default, resolve_into
from engine.runtimes import ModelLoadError
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


def test_a_pinned_revision_has_no_offline_stand_in():
    def unreachable(model: str) -> None:
        raise ConnectionError("Name or service not known")

    written = []
    with pytest.raises(ModelLoadError) as info:
        choose("some/model", ask=unreachable, fallback=written.append, revision="v2.0")
    assert not written
    assert str(info.value).startswith("MODEL_REVISION=v2.0 pins a revision of some/model, but the Hugging Face Hub "
                                      "cannot be reached for it (ConnectionError: Name or service not known)")
    assert "unset MODEL_REVISION" in str(info.value)


class FakeHub:
    """The Hub for model-init: answers (or not) and 'downloads' into a snapshot directory of a fake cache."""

    def __init__(self, cache: Path, reachable: bool = True) -> None:
        self.cache, self.reachable, self.asked, self.resolved = cache, reachable, [], []

    def ask(self, model: str) -> None:
        self.asked.append(model)
        if not self.reachable:
            raise ConnectionError("Name or service not known")

    def resolve(self, model: str, revision: str | None) -> Path:
        self.resolved.append((model, revision))
        snapshot = self.cache / f"models--{model.replace('/', '--')}" / "snapshots" / (revision or "c0ffee")
        snapshot.mkdir(parents=True, exist_ok=True)
        return snapshot


def test_model_init_links_the_hub_model_when_the_hub_answers(tmp_path, capsys):
    hub = FakeHub(tmp_path / "hf-cache")
    link, bench = tmp_path / "default", tmp_path / "bench"
    said = resolve_into(link, bench, {}, ask=hub.ask, fallback=pytest.fail, resolve=hub.resolve)
    assert hub.asked == [hub_default()] and hub.resolved == [(hub_default(), None)]
    snapshot = hub.cache / f"models--{hub_default()}" / "snapshots" / "c0ffee"
    assert link.resolve() == snapshot.resolve() and not Path(os.readlink(link)).is_absolute()  # on the same volume
    assert said == f"{link} -> {snapshot} ({hub_default()})" and capsys.readouterr().err == ""
    source = ModelSource(str(link), link)  # what a worker given MODEL=<link> sees: the hub model and its commit
    assert (source.hub_model, source.commit) == (hub_default(), "c0ffee")
    resolve_into(link, bench, {"MODEL_REVISION": "abc123"}, ask=hub.ask, fallback=pytest.fail, resolve=hub.resolve)
    assert hub.resolved[-1] == (hub_default(), "abc123") and link.resolve().name == "abc123"  # relinked


def test_model_init_links_the_bench_model_loudly_without_the_hub(tmp_path, capsys):
    hub = FakeHub(tmp_path / "hf-cache", reachable=False)
    link, bench = tmp_path / "default", tmp_path / "bench"
    said = resolve_into(link, bench, {"MODEL": ""}, ask=hub.ask, fallback=lambda d: d.mkdir(), resolve=hub.resolve)
    assert link.resolve() == bench.resolve() and not hub.resolved
    assert "OFFLINE BENCH MODEL" in said
    err = capsys.readouterr().err
    assert "!! Serving the OFFLINE BENCH MODEL" in err and "MODEL=<hub id or mounted directory> docker compose up" in err
    with pytest.raises(ModelLoadError, match="MODEL_REVISION=v1 pins a revision"):  # a pinned revision: no stand-in
        resolve_into(link, bench, {"MODEL_REVISION": "v1"}, ask=hub.ask, fallback=pytest.fail, resolve=hub.resolve)


def test_model_init_resolves_a_given_model_and_refuses_a_revision_of_a_directory(tmp_path):
    hub = FakeHub(tmp_path / "hf-cache", reachable=False)  # a given model is not asked about: it is resolved
    link, bench, mounted = tmp_path / "default", tmp_path / "bench", tmp_path / "mounted"
    mounted.mkdir()
    resolve_into(link, bench, {"MODEL": "org/model", "MODEL_REVISION": "v3"}, ask=hub.ask, fallback=pytest.fail,
                 resolve=hub.resolve)
    assert hub.resolved == [("org/model", "v3")] and not hub.asked and link.resolve().name == "v3"
    resolve_into(link, bench, {"MODEL": str(mounted)}, ask=hub.ask, fallback=pytest.fail,
                 resolve=lambda m, r: Path(m))
    assert link.resolve() == mounted.resolve()
    with pytest.raises(ValueError, match=f"MODEL_REVISION=v3 pins a Hugging Face Hub revision, but MODEL={mounted} is "
                                         "a local directory"):
        resolve_into(link, bench, {"MODEL": str(mounted), "MODEL_REVISION": "v3"}, ask=hub.ask, fallback=pytest.fail,
                     resolve=hub.resolve)


def test_the_model_init_command(tmp_path, tiny_model):
    link, bench = tmp_path / "models" / "default", tmp_path / "models" / "bench"
    bench.parent.mkdir()
    bench.symlink_to(tiny_model)  # already written (the bench model takes a while)
    command = [sys.executable, "-m", "engine.offline.default_model", "--link", str(link), "--bench", str(bench)]
    done = subprocess.run(command, env=python_env(MODEL="", MODEL_REVISION=""), cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert link.resolve() == tiny_model.resolve() and "OFFLINE BENCH MODEL" in done.stderr
    refused = subprocess.run(command, env=python_env(MODEL=str(tiny_model), MODEL_REVISION="v1"), cwd=tmp_path,
                             capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"invalid settings: MODEL_REVISION=v1 pins a Hugging Face Hub revision, but "
                                     f"MODEL={tiny_model} is a local directory, used as it is: unset MODEL_REVISION")
    missing = subprocess.run(command, env=python_env(MODEL="org/not-cached"), cwd=tmp_path, capture_output=True,
                             text=True, timeout=120, check=False)  # offline (the harness's default) and not in the cache
    assert missing.returncode == 1 and missing.stderr.startswith("error: cannot load model 'org/not-cached'")
