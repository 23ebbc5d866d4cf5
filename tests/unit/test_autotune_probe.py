"""BACKEND=auto's measuring and deciding (engine/autotune/probe.py) with fake candidates: no model, no runtime."""

import json
import statistics
import time

import numpy as np
import pytest

from common.options import Query
from engine.autotune import probe as auto
from engine.autotune.choice import EXACT_TOLERANCE, Precision, gain_note, table_lines
from engine.autotune.probe import ProbePolicy, decide
from engine.autotune.probe_texts import PROBE_TEXTS
from engine.autotune.timing import MIN_ROUNDS
from engine.model_source import ModelSource
from engine.runtimes import BACKENDS, ModelLoadError
from engine.tokenizing import Tokenizer
from tests.unit.test_tokenizing import FakeHfTokenizer

FAITHFUL, FASTEST = Precision("faithful"), Precision("fastest")


def test_the_probe_policy_is_what_the_settings_ask_for(caplog):
    from engine.settings import ModelSettings

    asked = ModelSettings(model="m", precision="faithful", faithful_max_label_flips=2, faithful_max_prob_diff=0.05)
    assert ProbePolicy.of(asked, 64, 256) == ProbePolicy(64, 256, Precision("faithful", 2, 0.05))
    with caplog.at_level("WARNING", logger=auto.__name__):
        legacy = ProbePolicy.of(ModelSettings(model="m", backend_allow_approximate=True), 8, None)
    assert legacy == ProbePolicy(8, None, Precision("fastest"))
    assert caplog.messages == ["BACKEND_ALLOW_APPROXIMATE=true is deprecated: it means PRECISION=fastest (any backend, "
                               "whatever it answers); set PRECISION=faithful (bf16 where it agrees with fp32) or fastest"]


class FakeRuntime:
    """Logits from the token ids (the same for every exact runtime), ``noise`` added, ``per_text_s`` per text."""

    device = "cpu"

    def __init__(self, backend, per_text_s, noise=0.0):
        self.backend, self.per_text_s, self.noise = backend, per_text_s, noise

    def logits(self, inputs):
        ids = inputs["input_ids"] * inputs["attention_mask"]
        time.sleep(self.per_text_s * len(ids))
        first = (ids.sum(axis=1) % 7).astype(np.float32) / 3
        return np.stack([first + self.noise, 1 - first], axis=1)


@pytest.fixture
def source(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    return ModelSource(str(model), model)


def run_decide(source, cache_dir, runtimes, policy, *, device="cpu", threads=2):
    opened = []

    def opener(backend):
        opened.append(backend)
        if backend not in runtimes:
            raise ModelLoadError(f"{backend} is broken here")
        return runtimes[backend]

    choice = decide(source, Tokenizer(FakeHfTokenizer(), 64), opener, policy, device=device, threads=threads,
                    cache_dir=cache_dir)
    return choice, opened


def test_decide_measures_picks_and_reuses_its_decision(source, tmp_path, monkeypatch):
    monkeypatch.setattr(auto, "installed", lambda backend: True)
    runtimes = {"torch": FakeRuntime("torch", 2e-4), "onnxruntime": FakeRuntime("onnxruntime", 1e-4),
                "openvino-bf16": FakeRuntime("openvino-bf16", 1e-5, noise=1e-3)}  # fastest, but approximate
    policy = ProbePolicy(window=16, max_batch_tokens=None, seconds=0.05)
    choice, opened = run_decide(source, tmp_path, runtimes, policy)
    assert choice.backend == "onnxruntime" and not choice.from_cache
    assert opened == ["torch", *[b for b in BACKENDS if b != "torch"]]  # the reference first; approximate ones too
    assert {m.backend: m.kind for m in choice.table} == {
        "torch": "exact", "onnxruntime": "exact", "openvino-bf16": "approximate",
        **{b: "failed" for b in BACKENDS if b not in runtimes}}
    assert set(choice.budgets) == {256, 512, 1024} and choice.max_batch_tokens in choice.budgets
    for m in choice.table:  # timed in rounds, each figure the median of its rounds
        assert m.error or (len(m.runs) >= MIN_ROUNDS and m.sentences_per_s == statistics.median(m.runs))

    again, opened = run_decide(source, tmp_path, runtimes, policy)
    assert (again.backend, again.max_batch_tokens, opened) == ("onnxruntime", choice.max_batch_tokens,
                                                               [])  # nothing measured again
    assert again.from_cache

    faithful, _ = run_decide(source, tmp_path, runtimes, ProbePolicy(16, None, FAITHFUL, seconds=0.05))
    assert faithful.backend == "openvino-bf16" and not faithful.from_cache  # another setting: another decision
    assert {m.backend: m.kind for m in faithful.table}["openvino-bf16"] == "approximate"


def test_at_exact_the_start_says_what_faithful_would_gain(source, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(auto, "installed", lambda backend: True)
    runtimes = {"torch": FakeRuntime("torch", 4e-4), "torch-bf16": FakeRuntime("torch-bf16", 1e-4, noise=1e-3),
                "torch-int8": FakeRuntime("torch-int8", 1e-5, noise=2.0)}  # the fastest, but far off: not faithful
    with caplog.at_level("INFO", logger=auto.__name__):
        choice, _ = run_decide(source, tmp_path, runtimes, ProbePolicy(8, 128, seconds=0.05))
    assert choice.backend == "torch"
    (note,) = [r.getMessage() for r in caplog.records if "would run" in r.getMessage()]
    assert note.startswith("BACKEND=auto: PRECISION=faithful would run torch-bf16 at ") and "x torch's" in note
    assert note == (f"BACKEND=auto: {gain_note(choice, Precision(), FAITHFUL)}; answers of PRECISION=exact are "
                    "PyTorch fp32's (docs/backends.md)")
    caplog.clear()
    with caplog.at_level("INFO", logger=auto.__name__):
        run_decide(source, tmp_path / "slow", {"torch": FakeRuntime("torch", 1e-5)}, ProbePolicy(8, 128, seconds=0.05))
    assert "would run" not in caplog.text  # nothing faithful is faster: nothing to say


def test_a_decision_made_by_an_older_export_is_measured_again_failed_candidates_too(source, tmp_path, monkeypatch):
    """A fix to the export (EXPORT_FORMAT) can make a model export that failed before: the cached decision, which
    recorded the failure, must not outlive it."""
    from engine.autotune import probe

    monkeypatch.setattr(auto, "installed", lambda backend: True)
    policy = ProbePolicy(window=8, max_batch_tokens=128, seconds=0.05)
    before, _ = run_decide(source, tmp_path, {"torch": FakeRuntime("torch", 2e-4)}, policy)
    assert before.backend == "torch" and {m.backend: m.kind for m in before.table}["onnxruntime"] == "failed"
    monkeypatch.setattr(probe, "EXPORT_FORMAT", probe.EXPORT_FORMAT + 1)
    runtimes = {"torch": FakeRuntime("torch", 2e-4), "onnxruntime": FakeRuntime("onnxruntime", 1e-5)}
    after, opened = run_decide(source, tmp_path, runtimes, policy)
    assert not after.from_cache and "onnxruntime" in opened and after.backend == "onnxruntime"


def test_a_decision_is_measured_again_when_the_tokenizer_files_or_a_runtimes_version_change(tmp_path, monkeypatch):
    """The tokenizer decides the passes' shapes (and so the speed), the versions the kernels: a decision keyed by
    the weights alone would outlive either change."""
    from engine.autotune import probe

    monkeypatch.setattr(auto, "installed", lambda backend: True)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    policy, runtimes = ProbePolicy(8, 128, seconds=0.05), {"torch": FakeRuntime("torch", 1e-5)}
    first, _ = run_decide(ModelSource(str(model), model), tmp_path, runtimes, policy)
    kept, _ = run_decide(ModelSource(str(model), model), tmp_path, runtimes, policy)
    assert not first.from_cache and kept.from_cache
    (model / "vocab.txt").write_text("[PAD]\n[UNK]\nnew\n")
    retokenized, _ = run_decide(ModelSource(str(model), model), tmp_path, runtimes, policy)
    assert not retokenized.from_cache
    real = probe.package_version
    monkeypatch.setattr(probe, "package_version", lambda p: "99.0" if p == "transformers" else real(p))
    upgraded, _ = run_decide(ModelSource(str(model), model), tmp_path, runtimes, policy)
    assert not upgraded.from_cache


def test_a_decision_is_kept_per_device_and_thread_count_in_the_export_caches_choices(source, tmp_path, monkeypatch,
                                                                                    caplog):
    """Threads and the device change which backend is fastest: each gets its own decision, in EXPORT_CACHE_DIR's
    choices/ (docs/backends.md: where an operator deletes one to measure again)."""
    monkeypatch.setattr(auto, "installed", lambda backend: True)
    policy, runtimes = ProbePolicy(8, 128, seconds=0.05), {"torch": FakeRuntime("torch", 1e-5)}
    with caplog.at_level("INFO", logger=auto.__name__):
        first, _ = run_decide(source, tmp_path, runtimes, policy, threads=2)
    (saved,) = (tmp_path / "choices").glob("*.json")
    assert not first.from_cache
    recorded = json.loads(saved.read_text())["inputs"]  # what it depends on, for an operator reading the file
    assert (recorded["device"], recorded["threads"], recorded["max_batch_tokens"]) == ("cpu", 2, 128)
    assert sorted(recorded) == ["cpu", "device", "export", "inputs", "max_batch_tokens", "max_length", "model",
                                "precision", "threads", "versions", "window"]  # docs/backends.md's list
    assert sorted(recorded["versions"]) == ["onnxruntime", "openvino", "tokenizers", "torch", "transformers"]
    assert [r.getMessage() for r in caplog.records if r.levelname == "INFO"][:2] == [
        f"BACKEND=auto: measuring the installed backends on {source.ref} (first start with this model, CPU and "
        "settings)",
        f"BACKEND=auto measured the installed backends (decision saved in {saved}):\n  " + "\n  ".join(
            table_lines(first))]
    caplog.clear()
    other_threads, _ = run_decide(source, tmp_path, runtimes, policy, threads=1)
    other_device, _ = run_decide(source, tmp_path, runtimes, policy, device="cuda")
    assert not other_threads.from_cache and not other_device.from_cache
    decisions = sorted((tmp_path / "choices").glob("*.json"))
    assert len(decisions) == 3  # each taken under its own lock, beside it
    assert sorted((tmp_path / "choices").glob("*.lock")) == [d.with_suffix(".lock") for d in decisions]
    with caplog.at_level("INFO", logger=auto.__name__):
        reused, _ = run_decide(source, tmp_path, runtimes, policy, threads=1)
    assert reused.from_cache
    assert (f"BACKEND=auto: torch, token budget 128 (decided earlier: {reused.from_cache}; delete it to measure "
            "again)") in caplog.messages


def test_the_cpu_a_decision_is_keyed_by_is_its_model_and_the_instruction_sets_that_pick_a_runtime(monkeypatch):
    monkeypatch.setattr(auto, "cpu_model", lambda: "Some Xeon")
    monkeypatch.setattr(auto, "cpu_flags", lambda: {"sse4_2", "amx_int8", "avx2", "avx512_bf16", "fma"})
    assert auto.cpu_identity() == "Some Xeon [avx2 avx512_bf16 amx_int8]"  # in a fixed order, nothing else
    monkeypatch.setattr(auto, "cpu_flags", lambda: {"avx512f", "avx512_vnni", "amx_bf16"})
    assert auto.cpu_identity() == "Some Xeon [avx512f avx512_vnni amx_bf16]"
    assert auto.package_version("no-such-package-here") == ""  # not installed: recorded as such
    assert auto.package_version("numpy") == np.__version__


def test_the_hosts_load_is_the_busier_of_the_two_timings_and_budgets_are_tuned_for_windows_only(
        source, tmp_path, monkeypatch, caplog):
    from engine.autotune import timing

    monkeypatch.setattr(auto, "installed", lambda backend: backend in ("torch", "onnxruntime"))
    runtimes = {"torch": FakeRuntime("torch", 1e-5)}  # onnxruntime fails to load
    real = timing.time_in_rounds

    def with_load(*shares):
        loads = iter(shares)
        monkeypatch.setattr(auto, "time_in_rounds",
                            lambda candidates, seconds: timing.Timed(real(candidates, seconds).runs, next(loads)))

    for shares, expected in [((0.1, 0.4), 0.4), ((0.4, 0.1), 0.4), ((0.1, None), 0.1), ((None, 0.3), 0.3),
                             ((0.9, 0.2), 0.9)]:  # 0.9: a percentage a few points off shows
        with_load(*shares)
        caplog.clear()
        with caplog.at_level("WARNING", logger=auto.__name__):
            choice, _ = run_decide(source, tmp_path / f"{shares}", runtimes, ProbePolicy(2, None, seconds=0.05))
        assert choice.others_cpu_share == pytest.approx(expected) and set(choice.budgets) == {256, 512, 1024}
        (saved,) = (tmp_path / f"{shares}" / "choices").glob("*.json")
        busy = [m for m in caplog.messages if "measured while" in m]
        assert busy == [f"BACKEND=auto measured while other processes used {100 * expected:.0f}% of the CPUs: its "
                        "figures may be off (how far its rounds spread is in the table); delete "
                        f"{saved} to measure again on a quieter host"] * (expected > timing.BUSY_SHARE)
    with_load(0.05)
    caplog.clear()
    with caplog.at_level("WARNING", logger=auto.__name__):
        naive, _ = run_decide(source, tmp_path / "naive", runtimes, ProbePolicy(1, None, seconds=0.05))
    assert not [m for m in caplog.messages if "measured while" in m]
    assert naive.budgets == {} and naive.max_batch_tokens == auto.DEFAULT_BATCH_TOKENS  # batch 1: nothing to tune
    assert naive.others_cpu_share == pytest.approx(0.05)
    broken = {m.backend: m.error for m in naive.table}["onnxruntime"]
    assert broken == "onnxruntime is broken here"
    assert f"BACKEND=auto: onnxruntime cannot run this model: {broken}" in caplog.messages


@pytest.mark.parametrize("position", [0, -1], ids=["first", "last"])
def test_the_first_and_the_last_probe_texts_are_checked_too(source, tmp_path, monkeypatch, position):
    """Every probe text is compared, once: a candidate whose label flips on one of them alone has one flip."""
    monkeypatch.setattr(auto, "installed", lambda backend: backend in ("torch", "onnxruntime"))
    ids = Tokenizer(FakeHfTokenizer(), 64).encode([Query(PROBE_TEXTS[position])])[0].ids
    runtimes = {"torch": OddOnOneText("torch", 2e-4, TIE, odd_ids=ids),
                "onnxruntime": OddOnOneText("onnxruntime", 1e-5, FLIPPED, odd_ids=ids)}
    choice, _ = run_decide(source, tmp_path, runtimes, ProbePolicy(8, 128, seconds=0.05))
    flipped = {m.backend: m for m in choice.table}["onnxruntime"]
    assert (flipped.label_flips, flipped.kind, choice.backend) == (1, "approximate", "torch")


def test_a_set_token_budget_is_used_as_is(source, tmp_path, monkeypatch):
    monkeypatch.setattr(auto, "installed", lambda backend: backend in ("torch", "onnxruntime"))
    runtimes = {"torch": FakeRuntime("torch", 1e-4), "onnxruntime": FakeRuntime("onnxruntime", 2e-4)}
    choice, _ = run_decide(source, tmp_path, runtimes, ProbePolicy(8, 128, seconds=0.05))
    assert (choice.backend, choice.max_batch_tokens, choice.budgets) == ("torch", 128, {})


def test_the_reference_failing_stops_the_start(source, tmp_path, monkeypatch):
    monkeypatch.setattr(auto, "installed", lambda backend: backend == "torch")
    with pytest.raises(ModelLoadError, match="torch is broken"):
        run_decide(source, tmp_path, {}, ProbePolicy(8, None, seconds=0.05))


class CrashingOpener:
    """A picklable opener whose ``crash_on`` backend kills the process, as a segfaulting runtime would."""

    def __init__(self, crash_on):
        self.crash_on = crash_on

    def __call__(self, backend):
        if backend == self.crash_on:
            import os

            os._exit(139)
        return FakeRuntime(backend, 0.0)


def test_a_runtime_crashing_the_measuring_child_fails_the_start_with_the_fix(source, tmp_path, monkeypatch):
    policy = ProbePolicy(4, 64, seconds=0.05)
    tokenizer = Tokenizer(FakeHfTokenizer(), 64)
    with pytest.raises(ModelLoadError) as info:
        decide(source, tokenizer, CrashingOpener("onnxruntime"), policy, device="cpu", threads=1, cache_dir=tmp_path,
               isolate=True)
    assert str(info.value) == (f"BACKEND=auto: the process measuring the backends on {source.ref!r} died (a runtime "
                               "crashed on this model); set BACKEND to one that runs it, e.g. torch")
    assert list((tmp_path / "choices").glob("*.json")) == []  # no decision recorded
    choice = decide(source, tokenizer, CrashingOpener("nothing"), policy, device="cpu", threads=1,
                    cache_dir=tmp_path, isolate=True)
    assert choice.backend in ("torch", "onnxruntime", "openvino")  # measured in the child, returned to us


PARENT_ONLY = False  # set in the test process only: a forked child would see it, a spawned one imports it afresh


class ChildProbe:
    """A picklable opener: torch runs; every other candidate fails, saying whether its process saw PARENT_ONLY."""

    def __call__(self, backend):
        if backend == "torch":
            return FakeRuntime(backend, 0.0)
        raise ModelLoadError("forked: sees the parent's state" if PARENT_ONLY else "spawned")


def test_the_measuring_child_is_spawned_and_logs_as_its_parent_does(source, tmp_path, monkeypatch, capfd):
    """Spawned, not forked: the parent may hold threads and runtimes a fork would copy mid-operation. Its log lines
    are set up as the parent's (here JSON lines), not Python's bare fallback."""
    import json
    import sys

    monkeypatch.setattr(sys.modules[__name__], "PARENT_ONLY", True)
    monkeypatch.setattr(auto, "installed", lambda backend: backend in ("torch", "onnxruntime"))
    monkeypatch.setattr(auto, "current_setup", lambda: ("INFO", "probe-child", "json"))
    policy = ProbePolicy(4, 64, seconds=0.05)
    tokenizer = Tokenizer(FakeHfTokenizer(), 64)
    choice = decide(source, tokenizer, ChildProbe(), policy, device="cpu", threads=1, cache_dir=tmp_path,
                    isolate=True)
    assert {m.backend: m.error for m in choice.table}["onnxruntime"] == "spawned"
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    warning = {"level": "WARNING", "process": "probe-child", "logger": auto.__name__,
               "message": "BACKEND=auto: onnxruntime cannot run this model: spawned"}
    assert any(warning.items() <= line.items() for line in lines), lines


# The one probe text the runtimes below answer apart from the others, by its token ids (unique among the probe texts).
ODD_TEXT = "dull"
ODD_IDS = Tokenizer(FakeHfTokenizer(), 64).encode([Query(ODD_TEXT)])[0].ids


class OddOnOneText(FakeRuntime):
    """FakeRuntime's logits (``noise`` added), except for the probe text ODD_TEXT, which gets ``odd_logits``."""

    def __init__(self, backend, per_text_s, odd_logits, noise=0.0, odd_ids=None):
        super().__init__(backend, per_text_s, noise)
        self.odd_logits = np.array(odd_logits, dtype=np.float32)
        self.odd_ids = ODD_IDS if odd_ids is None else odd_ids

    def logits(self, inputs):
        out = super().logits(inputs)
        for row, (ids, mask) in enumerate(zip(inputs["input_ids"], inputs["attention_mask"])):
            if ids[mask == 1].tolist() == self.odd_ids:
                out[row] = self.odd_logits
        return out


def test_the_odd_text_is_one_probe_text():
    encodings = Tokenizer(FakeHfTokenizer(), 64).encode([Query(text) for text in PROBE_TEXTS])
    assert [e.ids for e in encodings].count(ODD_IDS) == 1 and len(PROBE_TEXTS) > 1


# The reference (torch) and a faster fp32 candidate (onnxruntime) that agrees with it on every probe text but one.
# A near tie on the odd text: a flip of its label moves its probabilities by ~5e-6, well within the tolerance.
TIE, FLIPPED = (0.0, 1e-5), (1e-5, 0.0)
FAR, NEAR = (1.0, 0.0), (1.01, 0.0)  # its probabilities off by ~2e-3, its label the same


@pytest.mark.parametrize("reference_odd,candidate_odd,candidate_noise", [
    (TIE, FLIPPED, 0.0),  # (a) its label flipped on that one text only, probabilities within the tolerance
    (FAR, NEAR, 1e-6),  # (b) off by more than the tolerance on that one text only, within it on every other
], ids=["label-flipped-on-one-text", "probability-off-on-one-text"])
def test_a_backend_wrong_on_one_probe_text_is_approximate_and_never_chosen_as_exact(
        source, tmp_path, monkeypatch, reference_odd, candidate_odd, candidate_noise):
    monkeypatch.setattr(auto, "installed", lambda backend: backend in ("torch", "onnxruntime"))
    runtimes = {"torch": OddOnOneText("torch", 2e-4, reference_odd),
                "onnxruntime": OddOnOneText("onnxruntime", 1e-5, candidate_odd, noise=candidate_noise)}  # faster
    choice, _ = run_decide(source, tmp_path, runtimes, ProbePolicy(8, 128, seconds=0.05))
    kinds = {m.backend: m.kind for m in choice.table}
    assert kinds == {"torch": "exact", "onnxruntime": "approximate"}
    assert choice.backend == "torch"  # approximate backends are not allowed
    allowed, _ = run_decide(source, tmp_path, runtimes, ProbePolicy(8, 128, FASTEST, seconds=0.05))
    assert allowed.backend == "onnxruntime"  # it runs, and is the faster one, when approximate ones may win


def test_a_backend_within_the_tolerance_on_every_probe_text_is_exact(source, tmp_path, monkeypatch):
    monkeypatch.setattr(auto, "installed", lambda backend: backend in ("torch", "onnxruntime"))
    runtimes = {"torch": OddOnOneText("torch", 2e-4, FAR),
                "onnxruntime": OddOnOneText("onnxruntime", 1e-5, (1.0 + 2e-4, 0.0), noise=1e-5)}
    choice, _ = run_decide(source, tmp_path, runtimes, ProbePolicy(8, 128, seconds=0.05))
    candidate = next(m for m in choice.table if m.backend == "onnxruntime")
    assert candidate.kind == "exact" and 0 < candidate.max_prob_diff <= EXACT_TOLERANCE
    assert choice.backend == "onnxruntime"  # the faster exact one


def test_auto_measures_only_the_installed_backends_and_says_how_to_add_the_others(source, tmp_path, monkeypatch,
                                                                                  caplog):
    monkeypatch.setattr(auto, "installed", lambda backend: BACKENDS[backend].family == "torch")  # no extras
    runtimes = {"torch": FakeRuntime("torch", 2e-4), "onnxruntime": FakeRuntime("onnxruntime", 1e-4)}
    with caplog.at_level("WARNING", logger=auto.__name__):
        choice, opened = run_decide(source, tmp_path, runtimes, ProbePolicy(8, 128, seconds=0.05))
    torches = [b for b in BACKENDS if BACKENDS[b].family == "torch"]
    assert choice.backend == "torch" and opened == torches  # onnxruntime would run, but it is not installed
    assert [m.backend for m in choice.table] == torches
    (note,) = [r.getMessage() for r in caplog.records if "not installed" in r.getMessage()]
    assert note == ("BACKEND=auto: not installed, so not measured: onnxruntime (pip install 'sentimentalyzer[onnx]'); "
                    "openvino (pip install 'sentimentalyzer[openvino]'); or every fast runtime: "
                    "pip install 'sentimentalyzer[all]'")
    caplog.clear()
    with caplog.at_level("WARNING", logger=auto.__name__):
        run_decide(source, tmp_path, runtimes, ProbePolicy(8, 128, FAITHFUL, seconds=0.05))
    assert "openvino, openvino-bf16 (pip install 'sentimentalyzer[openvino]')" in caplog.text

    monkeypatch.setattr(auto, "installed", lambda backend: True)  # everything installed: nothing to say
    caplog.clear()
    with caplog.at_level("WARNING", logger=auto.__name__):
        run_decide(source, tmp_path / "other", runtimes, ProbePolicy(8, 128, seconds=0.05))
    assert "not installed" not in caplog.text


@pytest.mark.parametrize("rates,chosen", [({256: 100.0, 512: 100.0, 1024: 104.0}, 512),  # within the margin
                                          ({256: 100.0, 512: 99.0, 1024: 99.5}, 512),
                                          ({256: 100.0, 512: 90.0, 1024: 95.0}, 256)])
def test_the_default_token_budget_stays_unless_another_measured_clearly_faster(source, tmp_path, monkeypatch,
                                                                                 rates, chosen):
    from engine.autotune import timing

    assert auto.DEFAULT_BATCH_TOKENS == 512
    monkeypatch.setattr(auto, "installed", lambda backend: backend == "torch")
    monkeypatch.setattr(auto, "time_in_rounds", lambda candidates, seconds: timing.Timed(
        {key: [rates.get(key, 50.0)] * MIN_ROUNDS for key in candidates}, None))
    choice, _ = run_decide(source, tmp_path, {"torch": FakeRuntime("torch", 0)}, ProbePolicy(16, None, seconds=0.05))
    assert choice.budgets == rates and choice.max_batch_tokens == chosen


def test_a_candidates_error_is_its_first_line_cut_to_200_characters(source, tmp_path, monkeypatch):
    """What the table at /info and the start-up warning show of a runtime that could not run the model."""
    monkeypatch.setattr(auto, "installed", lambda backend: backend in ("torch", "onnxruntime"))
    long_line = "x" * 150 + "y" * 100

    def opener(backend):
        if backend == "torch":
            return FakeRuntime("torch", 0)
        raise ModelLoadError(f"{long_line}\nsecond line")

    choice = decide(source, Tokenizer(FakeHfTokenizer(), 64), opener, ProbePolicy(2, 128, seconds=0.02),
                    device="cpu", threads=2, cache_dir=tmp_path)
    assert {m.backend: m.error for m in choice.table}["onnxruntime"] == long_line[:200]
