"""BACKEND=auto's choice among measured candidates (engine/autotune/choice.py): pure, no measuring."""

import json
import stat

import pytest

from engine.autotune.choice import (
    Choice,
    DecisionCache,
    Measured,
    NoCandidate,
    Precision,
    best_budget,
    choose,
    gain_note,
    summary,
    table_lines,
)

EXACT, FAITHFUL, FASTEST = Precision("exact"), Precision("faithful"), Precision("fastest")


def measured(backend, rate, *, full=True, diff=0.0, flips=0, error=""):
    return Measured(backend, full, flips, diff, rate, error)


def test_the_fastest_exact_backend_wins():
    table = [measured("torch", 80), measured("onnxruntime", 150), measured("openvino", 170)]
    assert choose(table, EXACT).backend == "openvino"


def test_approximate_ones_compete_only_at_a_precision_that_accepts_them():
    table = [measured("torch", 80), measured("openvino", 170),
             measured("openvino-bf16", 300, full=False, diff=5e-3),  # reduced precision, close to fp32
             measured("onnxruntime", 400, diff=2e-4)]  # fp32, but measured off the reference: approximate
    assert [m.kind for m in table] == ["exact", "exact", "approximate", "approximate"]
    assert choose(table, EXACT).backend == "openvino"
    assert choose(table, FAITHFUL).backend == "onnxruntime"
    assert choose(table, FASTEST).backend == "onnxruntime"


def test_faithful_takes_an_approximate_backend_only_within_its_bounds_and_fastest_takes_any():
    flips = measured("torch-int8", 500, full=False, diff=0.04, flips=1)  # one label flipped, a probability 0.04 off
    far = measured("openvino-bf16", 400, full=False, diff=0.03)  # no flip, a probability 0.03 off
    close = measured("torch-bf16", 300, full=False, diff=0.019)
    table = [measured("torch", 80), flips, far, close]
    assert choose(table, EXACT).backend == "torch"
    assert choose(table, FAITHFUL).backend == "torch-bf16"
    assert choose(table, Precision("faithful", max_label_flips=1)).backend == "torch-bf16"  # int8: 0.04 off too
    assert choose(table, Precision("faithful", max_label_flips=1, max_prob_diff=0.05)).backend == "torch-int8"
    assert choose(table, Precision("faithful", max_prob_diff=0.05)).backend == "openvino-bf16"
    assert choose(table, FASTEST).backend == "torch-int8"


def test_faithfuls_bounds_are_inclusive():
    """FAITHFUL_MAX_PROB_DIFF and FAITHFUL_MAX_LABEL_FLIPS are the most that faithful accepts, not the least refused."""
    at_both = measured("torch-bf16", 300, full=False, diff=0.03, flips=2)
    table = [measured("torch", 80), at_both]
    assert choose(table, Precision("faithful", max_label_flips=2, max_prob_diff=0.03)).backend == "torch-bf16"
    assert choose(table, Precision("faithful", max_label_flips=1, max_prob_diff=0.03)).backend == "torch"
    assert choose(table, Precision("faithful", max_label_flips=2, max_prob_diff=0.0299)).backend == "torch"


def test_a_flipped_label_or_a_failure_is_never_exact():
    assert not measured("openvino", 999, flips=1).exact
    failed = measured("onnxruntime", 999, error="cannot export")
    assert failed.kind == "failed"
    assert choose([measured("torch", 1), failed], FASTEST).backend == "torch"
    with pytest.raises(NoCandidate, match="onnxruntime: cannot export"):
        choose([failed], FASTEST)


def test_another_token_budget_needs_a_clear_margin():
    assert best_budget({256: 104.0, 512: 100.0, 1024: 90.0}, 512) == 512  # within the probe's noise
    assert best_budget({256: 120.0, 512: 100.0, 1024: 90.0}, 512) == 256
    assert best_budget({256: 210.0, 512: 200.0}, 512) == 512  # exactly 5 % faster is not clearly faster
    assert best_budget({256: 1.0, 1024: 0.5}, 512) == 256  # the default not measured: the fastest measured, however slow


def test_no_candidate_says_why_each_one_could_not_serve():
    table = [measured("torch", 0.0, error="out of memory"), measured("torch-int8", 90.0, full=False, flips=3, diff=0.4)]
    with pytest.raises(NoCandidate) as raised:
        choose(table, Precision())
    assert str(raised.value) == "no backend could run the model: torch: out of memory; torch-int8: approximate"


def test_the_decision_as_info_shows_it_rounds_its_figures_and_leaves_out_what_did_not_run():
    choice = Choice("openvino", 256, [Measured("openvino", True, 0, 1e-7, 95.64, runs=[95.64, 94.0, 99.0]),
                                      measured("onnxruntime", 0.0, error="could not export")],
                    {256: 121.24, 512: 98.36}, others_cpu_share=0.03149)
    shown = summary(choice)
    assert shown["others_cpu_share"] == 0.031 and shown["host_busy"] is False
    assert shown["budgets"] == {"256": 121.2, "512": 98.4}
    ran, failed = shown["table"]
    assert (ran["sentences_per_s"], ran["rounds"], ran["spread"]) == (95.6, 3, round(5.0 / 95.64, 3))
    assert failed == {"backend": "onnxruntime", "kind": "failed", "label_flips": None, "max_prob_diff": None,
                      "sentences_per_s": None, "rounds": None, "spread": None, "error": "could not export"}
    assert summary(Choice("torch", 512, [measured("torch", 80.0)]))["others_cpu_share"] is None  # not known


def test_the_note_of_what_faithful_would_gain_and_the_logged_table():
    table = [Measured("onnxruntime", True, 0, 1.5e-7, 100.0, runs=[100.0, 98.0, 101.0]),
             Measured("openvino-bf16", False, 0, 1e-3, 250.0, runs=[250.0, 240.0, 252.0]),
             measured("openvino", 0.0, error="could not export")]
    choice = Choice("onnxruntime", 256, table, {256: 100.0, 512: 90.0}, others_cpu_share=0.62)
    assert gain_note(choice, EXACT, FAITHFUL) == (
        "PRECISION=faithful would run openvino-bf16 at 250.0 sentences/s, 2.50x onnxruntime's 100.0 (probe: 0 label "
        "flip(s), max |dP| 1.0e-03 from PyTorch fp32)")
    as_fast = Choice("onnxruntime", 256, [table[0], Measured("openvino-bf16", False, 0, 1e-3, 100.0)])
    assert gain_note(as_fast, EXACT, FAITHFUL) is None  # nothing faster: nothing to say
    assert gain_note(Choice("torch", 256, table), EXACT, FAITHFUL) is None  # the chosen one not in the table
    assert table_lines(choice) == [
        "backend        kind         flips  max |dP|   sent/s  rounds, spread",
        "onnxruntime    exact            0   1.5e-07    100.0      3,   3.0 %  <- chosen",
        "openvino-bf16  approximate      0   1.0e-03    250.0      3,   4.8 %",
        "openvino       failed       could not export",
        "token budgets for onnxruntime: 256: 100.0/s, 512: 90.0/s -> 256",
        "other processes used 62 % of the CPUs meanwhile (a busy host)"]


def test_the_table_goes_on_past_a_failed_candidate_and_shows_a_wide_spread_as_it_is():
    table = [measured("openvino", 0.0, error="could not export"),
             Measured("torch", True, 0, 0.0, 100.0, runs=[100.0, 50.0, 100.0])]  # one round of three at half speed
    assert table_lines(Choice("torch", 512, table, others_cpu_share=0.1)) == [
        "backend        kind         flips  max |dP|   sent/s  rounds, spread",
        "openvino       failed       could not export",
        "torch          exact            0   0.0e+00    100.0      3,  50.0 %  <- chosen",
        "other processes used 10 % of the CPUs meanwhile"]  # a quiet host: said without the warning


def test_the_decision_file_is_made_with_its_directories_and_says_what_it_was_measured_for(tmp_path):
    cache = DecisionCache(tmp_path / "export-cache" / "choices")  # a fresh EXPORT_CACHE_DIR
    parts = {"model": "abc", "threads": 2}
    path = cache.save(cache.key(parts), Choice("torch", 512, [measured("torch", 80)]), parts)
    assert json.loads(path.read_text())["inputs"] == parts  # for whoever reads or deletes it
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # workers running as other users read it too


def test_the_decision_cache_round_trips_and_ignores_garbage(tmp_path, caplog):
    cache = DecisionCache(tmp_path)
    key = cache.key({"model": "abc", "threads": 2})
    assert key != cache.key({"model": "abc", "threads": 1}) and cache.load(key) is None
    assert key == cache.key({"threads": 2, "model": "abc"})  # the same inputs, in whatever order they were gathered
    choice = Choice("openvino", 256, [measured("torch", 80), measured("openvino", 170)], {256: 180.0, 512: 170.0},
                    others_cpu_share=0.3)
    path = cache.save(key, choice, {"model": "abc"})
    loaded = cache.load(key)
    assert (loaded.backend, loaded.max_batch_tokens, loaded.budgets, loaded.from_cache, loaded.host_busy) == (
        "openvino", 256, {256: 180.0, 512: 170.0}, str(path), True)  # a later start still says it was measured busy
    assert [m.backend for m in loaded.table] == ["torch", "openvino"]
    cache.save(key, Choice("torch", 512, [measured("torch", 80)], others_cpu_share=None), {"model": "abc"})
    again = cache.load(key)  # the host's load could not be read while measuring: kept as unknown, not unreadable
    assert again is not None and again.others_cpu_share is None and not again.host_busy
    without_budgets = json.dumps({"key": key, "backend": "torch", "max_batch_tokens": 512, "table": []})
    for garbage, why in [("{not json", "Expecting property name"), (without_budgets, "'budgets'")]:
        path.write_text(garbage)
        with caplog.at_level("WARNING", logger="engine.autotune.choice"):
            assert cache.load(key) is None
        assert caplog.messages[-1].startswith(f"ignoring unreadable backend decision {path} ({why}")  # the cause
        assert caplog.messages[-1].endswith("): measuring again")
