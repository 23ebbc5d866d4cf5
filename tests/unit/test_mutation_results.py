"""scripts/mutation_results.py: mutmut's per-file results stored in the repository and written back as mutmut's own
meta before a run, so a fresh clone re-tests only the functions whose code changed."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("mutation_results", ROOT / "scripts" / "mutation_results.py")
mutation_results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mutation_results)

META = {"exit_code_by_key": {"engine.scoring.x_softmax__mutmut_1": 1, "engine.scoring.x_softmax__mutmut_2": 0,
                             "engine.scoring.x_softmax__mutmut_3": None,
                             "engine.scoring.xǁScorerǁ__init____mutmut_1": 36},
        "hash_by_function_name": {"x_softmax": "dee41ea51d36", "xǁScorerǁ__init__": "62fbc79e62d8"},
        "type_check_error_by_key": {}, "durations_by_key": {"engine.scoring.x_softmax__mutmut_1": 0.4},
        "estimated_durations_by_key": {}}


def write_meta(mutants: Path, path: str, meta: dict) -> None:
    (mutants / path).parent.mkdir(parents=True, exist_ok=True)
    (mutants / f"{path}.meta").write_text(json.dumps(meta))


def test_results_saved_then_seeded_give_mutmut_back_every_checked_result_with_its_functions_hash(tmp_path):
    write_meta(tmp_path / "ran", "engine/scoring.py", META)
    write_meta(tmp_path / "ran", "engine/runtimes/__init__.py",
               {**META, "exit_code_by_key": {"engine.runtimes.x_installed__mutmut_2": 0},
                "hash_by_function_name": {"x_installed": "0123456789ab"}})
    write_meta(tmp_path / "ran", "common/keys.py", {**META, "exit_code_by_key": {}, "hash_by_function_name": {}})
    stored = tmp_path / "results.json"
    saved = mutation_results.save(tmp_path / "ran", stored)
    assert saved == json.loads(stored.read_text())
    assert saved["engine/scoring.py"] == {"x_softmax": ["dee41ea51d36", [1, 0, None]],
                                          "xǁScorerǁ__init__": ["62fbc79e62d8", [36]]}
    assert saved["engine/runtimes/__init__.py"] == {"x_installed": ["0123456789ab", [None, 0]]}
    assert "common/keys.py" not in saved  # no mutants, nothing to keep

    assert mutation_results.seed(tmp_path / "fresh", stored) == 2
    seeded = json.loads((tmp_path / "fresh" / "engine/scoring.py.meta").read_text())
    assert seeded["exit_code_by_key"] == {k: v for k, v in META["exit_code_by_key"].items() if v is not None}
    assert seeded["hash_by_function_name"] == META["hash_by_function_name"]
    init = json.loads((tmp_path / "fresh" / "engine/runtimes/__init__.py.meta").read_text())
    assert init["exit_code_by_key"] == {"engine.runtimes.x_installed__mutmut_2": 0}  # a package's module name


def test_seeding_leaves_a_run_of_this_machine_alone(tmp_path):
    stored = tmp_path / "results.json"
    write_meta(tmp_path / "old", "engine/scoring.py", META)
    mutation_results.save(tmp_path / "old", stored)
    newer = {**META, "exit_code_by_key": {"engine.scoring.x_softmax__mutmut_1": 0}}
    write_meta(tmp_path / "here", "engine/scoring.py", newer)
    assert mutation_results.seed(tmp_path / "here", stored) == 0
    assert json.loads((tmp_path / "here" / "engine/scoring.py.meta").read_text()) == newer


def test_a_name_that_is_not_mutmuts_is_refused():
    with pytest.raises(ValueError, match="not a mutmut mutant name"):
        mutation_results.from_meta({**META, "exit_code_by_key": {"engine.scoring.x_softmax": 1}})


def test_the_stored_results_name_only_source_files_of_the_mutation_run():
    """The file in the repository, where one exists: each path is a tracked module under mutmut's source paths."""
    stored = ROOT / "docs" / "mutation-results.json"
    if not stored.exists():
        pytest.skip("no stored mutation results")
    for path, functions in json.loads(stored.read_text()).items():
        assert (ROOT / path).is_file(), path
        assert all(len(digest) == 12 and codes for digest, codes in functions.values()), path
