"""Mutation results kept in the repository (docs/mutation-results.json), so that a run on a fresh clone re-tests only
what changed: mutmut keeps its results in mutants/ (not tracked), and a full run takes hours on 2 cores.

    python scripts/mutation_results.py save    # mutants/**/*.meta -> docs/mutation-results.json (after a run)
    python scripts/mutation_results.py seed    # docs/mutation-results.json -> mutants/**/*.meta (before a run)

Each function's results are stored with the hash mutmut gives its source. mutmut itself keeps a mutant's result only
while that hash is unchanged and re-tests the mutants of every function whose code changed, so a seeded result is
never trusted for code it was not measured on. What is not re-tested: a mutant caught by a test that was deleted
since (the run keeps "killed", as mutmut does between its own runs); survivors are re-run by name after tests are
written for them (`scripts/mutation NAME...`).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants"
RESULTS = ROOT / "docs" / "mutation-results.json"
_NAME = re.compile(r"^(?P<module>.+)\.(?P<function>[^.]+)__mutmut_(?P<number>\d+)$")

# {source path: {function: [source hash, [exit code of mutant 1, of mutant 2, ...]]}}; null: not checked
Results = dict[str, dict[str, list]]


def from_meta(meta: dict) -> dict[str, list]:
    """One file's mutmut meta as {function: [hash, exit codes by mutant number]}."""
    by_function: dict[str, dict[int, int | None]] = {}
    for name, code in meta["exit_code_by_key"].items():
        match = _NAME.match(name)
        if match is None:
            raise ValueError(f"not a mutmut mutant name: {name!r}")
        by_function.setdefault(match["function"], {})[int(match["number"])] = code
    return {function: [meta["hash_by_function_name"].get(function),
                       [codes.get(n) for n in range(1, max(codes) + 1)]]
            for function, codes in sorted(by_function.items())}


def to_meta(path: str, functions: dict[str, list]) -> dict:
    """The meta mutmut reads before it generates a file's mutants: results it keeps where the hash still matches."""
    module = path.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
    codes = {f"{module}.{function}__mutmut_{n}": code
             for function, (_, results) in functions.items()
             for n, code in enumerate(results, start=1) if code is not None}
    return {"exit_code_by_key": codes,
            "hash_by_function_name": {function: digest for function, (digest, _) in functions.items() if digest},
            "type_check_error_by_key": {}, "durations_by_key": {}, "estimated_durations_by_key": {}}


def save(mutants: Path = MUTANTS, results: Path = RESULTS) -> Results:
    saved = {str(meta.relative_to(mutants)).removesuffix(".meta"): from_meta(json.loads(meta.read_text()))
             for meta in sorted(mutants.rglob("*.py.meta"))}
    saved = {path: functions for path, functions in saved.items() if functions}
    # One function per line: a later run's diff shows which functions' results changed.
    lines = [f"  {json.dumps(path)}: {{\n" + ",\n".join(f"    {json.dumps(f)}: {json.dumps(v, separators=(',', ':'))}"
                                                      for f, v in functions.items()) + "\n  }"
             for path, functions in saved.items()]
    results.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    return saved


def seed(mutants: Path = MUTANTS, results: Path = RESULTS) -> int:
    """Write the stored results as mutmut's meta for files that have none yet; returns how many files."""
    if not results.exists():
        return 0
    written = 0
    for path, functions in json.loads(results.read_text()).items():
        meta = mutants / f"{path}.meta"
        if meta.exists():  # mutmut's own, from a run on this machine: newer than the stored ones
            continue
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps(to_meta(path, functions), indent=4))
        written += 1
    return written


def main(argv: list[str]) -> int:
    if argv == ["save"]:
        print(f"saved the results of {len(save())} files to {RESULTS.relative_to(ROOT)}")
    elif argv == ["seed"]:
        print(f"seeded mutants/ with the stored results of {seed()} files")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
