"""Write docs/mutation.md from mutmut's results (mutants/**/*.meta) and the verdicts in
docs/mutation-verdicts.toml: the score per module and every surviving mutant with its diff and verdict.

    .venv/bin/python scripts/mutation_report.py     # after scripts/mutation (which runs it)

Score = (killed + timed out + killed when applied) / (mutants - equivalent). "Killed when applied": a mutant of
code that runs at import time, which mutmut cannot switch on after import; applied to a copy (`mutmut apply`), the
unit tests fail. A mutant no selected test runs ("no tests") counts as surviving: nothing would notice it.
Survivors without a verdict are listed as "unjudged" and make it exit 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from scripts/mutation

from mutation_results import RESULTS  # noqa: E402 (scripts/, this script's own directory)

from benchmarks.environment import cpu_model  # noqa: E402

MUTANTS = ROOT / "mutants"
VERDICTS = ROOT / "docs" / "mutation-verdicts.toml"
REPORT = ROOT / "docs" / "mutation.md"
CAUGHT = {1: "killed", 3: "killed", 36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout",
          37: "killed"}


def mutated_commit() -> str:
    """The commit whose code was mutated, ``+dirty`` with changes to tracked files other than the run's own results
    (scripts/mutation saves docs/mutation-results.json before it writes this report)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                              f":!{RESULTS.relative_to(ROOT)}", f":!{REPORT.relative_to(ROOT)}"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    return head + ("+dirty" if changed else "")


def status(exit_code: int | None) -> str:
    if exit_code is None:
        return "not checked"
    if exit_code in CAUGHT:
        return CAUGHT[exit_code]
    return {0: "survived", 5: "no tests", 33: "no tests", 34: "skipped"}.get(exit_code, "suspicious")


def results() -> dict[str, dict[str, str]]:
    """module path -> mutant name -> status."""
    out: dict[str, dict[str, str]] = {}
    for meta in sorted(MUTANTS.rglob("*.py.meta")):
        module = str(meta.relative_to(MUTANTS)).removesuffix(".meta")
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if codes:
            out[module] = {name: status(code) for name, code in codes.items()}
    return out


def diff(name: str) -> str:
    shown = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=ROOT, capture_output=True, text=True)
    lines = shown.stdout.splitlines()
    return "\n".join(line for line in lines[1:] if line.startswith(("+", "-", "@")) and not line.startswith(("+++",
                                                                                                          "---")))


def main() -> int:
    recorded = tomllib.loads(VERDICTS.read_text()) if VERDICTS.exists() else {}
    verdicts: dict[str, str] = recorded.get("verdicts", {})
    by_module = results()
    rows, survivors, totals = [], [], Counter()
    for module, mutants in by_module.items():
        counts = Counter(mutants.values())
        survived = [name for name, s in mutants.items() if s in ("survived", "no tests")]
        equivalent = sum(verdicts.get(name, "").startswith("equivalent") for name in survived)
        applied = sum(verdicts.get(name, "").startswith("killed when applied") for name in survived)
        counts["equivalent"] = equivalent
        counts["applied"] = applied
        totals.update(counts)
        totals["mutants"] += len(mutants)
        judged = len(mutants) - equivalent - counts["not checked"] - counts["skipped"]
        caught = counts["killed"] + counts["timeout"] + applied
        rows.append(f"| `{module}` | {len(mutants)} | {counts['killed'] + applied} | {counts['timeout']} | "
                    f"{len(survived) - equivalent - applied} | {equivalent} | {counts['not checked']} | "
                    f"{caught / judged:.1%} |" if judged
                    else f"| `{module}` | {len(mutants)} | — | — | — | — | {counts['not checked']} | — |")
        survivors += [(module, name, s) for name, s in mutants.items() if s in ("survived", "no tests", "suspicious")]
    judged = totals["mutants"] - totals["equivalent"] - totals["not checked"] - totals["skipped"]
    caught = totals["killed"] + totals["timeout"] + totals["applied"]
    score = caught / judged if judged else 0.0
    unjudged = [name for _, name, _ in survivors if name not in verdicts]
    lines = [
        "# Mutation testing",
        "",
        f"Generated by `scripts/mutation` ({date.today().isoformat()}, commit {mutated_commit()}, mutmut, "
        f"{cpu_model()}). Each mutant is one small "
        "change to one function of the core modules; the unit and integration tests that run that function are "
        "run against it. **Killed**: a test failed; **timeout**: the tests hung (also caught); **survived**: every "
        "test passed. Verdicts for survivors are in `docs/mutation-verdicts.toml`: *equivalent* (no behaviour "
        "changes, excluded from the score), *killed when applied* (code that runs at import, before mutmut can "
        "switch the mutant on: applied to a copy, the unit tests fail; counted as caught) or *tolerated* (a real "
        "change no test catches, with the reason; counted as surviving). **Not checked**: no run has reached the "
        "mutant yet (mutmut takes the cheapest mutants first); not in the score. Each mutant's result is stored in "
        "`docs/mutation-results.json` with the hash of its function's code; a later run, on any clone, re-tests "
        "only what is not checked or whose function changed.",
        "",
        f"**Score: {caught} of {judged} non-equivalent mutants caught = {score:.1%}** "
        f"({totals['mutants']} mutants, {totals['equivalent']} equivalent, {totals['applied']} killed when applied, "
        f"{len(unjudged)} unjudged, {totals['not checked']} not checked).",
        "",
        *[f"- {note}" for note in recorded.get("history", [])],
        "",
        "| module | mutants | killed | timeout | survived | equivalent | not checked | caught |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "## Surviving mutants",
        "",
    ]
    # One `mutmut show` process per survivor (~0.5 s of start-up each): a few at once.
    with ThreadPoolExecutor(max_workers=4) as pool:
        diffs = list(pool.map(diff, [name for _, name, _ in survivors]))
    for (module, name, s), shown in zip(survivors, diffs):
        lines += [f"### `{name}` ({s})", "", f"Verdict: {verdicts.get(name, '**unjudged**')}", "", "```diff",
                  shown, "```", ""]
    REPORT.write_text("\n".join(lines))
    print(f"score {score:.1%} ({caught}/{judged}); {len(survivors)} survivors, {len(unjudged)} unjudged -> {REPORT}")
    # A function's mutants are renumbered when its code changes: a verdict left for a number that is now caught or
    # gone could one day label another mutant. Listed so they are deleted.
    status_of = {name: s for mutants in by_module.values() for name, s in mutants.items()}
    stale = sorted(name for name in verdicts if status_of.get(name, "gone") not in ("survived", "no tests",
                                                                                   "not checked"))
    for name in stale:
        print(f"stale verdict ({status_of.get(name, 'gone')}): {name}")
    return 1 if unjudged else 0


if __name__ == "__main__":
    sys.exit(main())
