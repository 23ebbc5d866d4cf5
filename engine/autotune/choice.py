"""``BACKEND=auto``'s decision, apart from how candidates are measured (engine.autotune.probe): which measured
candidate wins, and the cache that lets the next start on the same model, CPU and settings skip measuring."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.autotune.timing import BUSY_SHARE, spread

log = logging.getLogger(__name__)

# Exact: every probe label equal to PyTorch fp32's and every probability within this of it (the same bound
# benchmarks/agreement.py checks on SST-2 dev).
EXACT_TOLERANCE = 1e-4
# Another token budget replaces the default only when it measures this much faster: the probe is short, and a
# few per cent is within its noise.
BUDGET_MARGIN = 1.05
CHOICE_FORMAT = 3  # 2: label flips counted, the precision policy in the key; 3: rounds, the host's load

EXACT, FAITHFUL, FASTEST = "exact", "faithful", "fastest"
# PRECISION=faithful's defaults (FAITHFUL_MAX_LABEL_FLIPS, FAITHFUL_MAX_PROB_DIFF): no label flipped on the probe,
# probabilities within 0.02 of PyTorch fp32's (bf16 on DistilBERT-size models: ~0.005; int8: far more).
FAITHFUL_MAX_FLIPS = 0
FAITHFUL_MAX_PROB_DIFF = 0.02


@dataclass(frozen=True, slots=True)
class Precision:
    """What a user accepts of answers (PRECISION): ``exact`` (PyTorch fp32's, within EXACT_TOLERANCE), ``faithful``
    (an approximate backend too, where the probe shows at most ``max_label_flips`` labels differing from PyTorch
    fp32's and no probability more than ``max_prob_diff`` from its), or ``fastest`` (any backend that runs)."""

    mode: str = EXACT
    max_label_flips: int = FAITHFUL_MAX_FLIPS
    max_prob_diff: float = FAITHFUL_MAX_PROB_DIFF

    def accepts(self, m: Measured) -> bool:
        if m.error:
            return False
        if m.exact or self.mode == FASTEST:
            return True
        return (self.mode == FAITHFUL and m.label_flips <= self.max_label_flips
                and m.max_prob_diff <= self.max_prob_diff)


@dataclass(slots=True)
class Measured:
    """One candidate as the probe saw it."""

    backend: str
    full_precision: bool  # declared: fp32 compute
    label_flips: int = -1  # probe texts whose label differs from PyTorch fp32's (-1: not compared)
    max_prob_diff: float = float("inf")
    sentences_per_s: float = 0.0  # the median of its rounds
    error: str = ""  # it failed to load or run: not a candidate
    runs: list[float] = field(default_factory=list)  # sentences/s per round (engine.autotune.timing)

    @property
    def spread(self) -> float:
        return spread(self.runs)

    @property
    def labels_equal(self) -> bool:
        return self.label_flips == 0

    @property
    def exact(self) -> bool:
        return (not self.error and self.full_precision and self.labels_equal
                and self.max_prob_diff <= EXACT_TOLERANCE)

    @property
    def kind(self) -> str:
        return "failed" if self.error else "exact" if self.exact else "approximate"


@dataclass(slots=True)
class Choice:
    backend: str
    max_batch_tokens: int
    table: list[Measured] = field(default_factory=list)
    budgets: dict[int, float] = field(default_factory=dict)  # token budget -> sentences/s, for the winner
    from_cache: str = ""  # the decision file it was read from, if it was not measured now
    others_cpu_share: float | None = None  # share of all CPUs other processes used while it measured; None: unknown

    @property
    def host_busy(self) -> bool:
        return self.others_cpu_share is not None and self.others_cpu_share > BUSY_SHARE


class NoCandidate(RuntimeError):
    pass


def choose(measured: list[Measured], precision: Precision) -> Measured:
    """The fastest candidate ``precision`` accepts (exact ones always). Failed ones never win."""
    usable = [m for m in measured if precision.accepts(m)]
    if not usable:
        raise NoCandidate("no backend could run the model: " + "; ".join(f"{m.backend}: {m.error or m.kind}"
                                                                          for m in measured))
    return max(usable, key=lambda m: m.sentences_per_s)


def gain_note(choice: Choice, precision: Precision, would: Precision) -> str | None:
    """What PRECISION=``would.mode`` would run instead of ``choice`` on this CPU, when it would run something
    faster; None otherwise."""
    chosen = next((m for m in choice.table if m.backend == choice.backend), None)
    usable = [m for m in choice.table if would.accepts(m) and not precision.accepts(m)]
    if chosen is None or not usable:
        return None
    best = max(usable, key=lambda m: m.sentences_per_s)
    if best.sentences_per_s <= chosen.sentences_per_s:
        return None
    return (f"PRECISION={would.mode} would run {best.backend} at {best.sentences_per_s:.1f} sentences/s, "
            f"{best.sentences_per_s / chosen.sentences_per_s:.2f}x {choice.backend}'s {chosen.sentences_per_s:.1f} "
            f"(probe: {best.label_flips} label flip(s), max |dP| {best.max_prob_diff:.1e} from PyTorch fp32)")


def best_budget(rates: dict[int, float], default: int) -> int:
    """The token budget to run with: the default unless another measured clearly faster."""
    best = max(rates, key=lambda b: rates[b])
    return best if rates[best] > BUDGET_MARGIN * rates.get(default, 0.0) else default


def summary(choice: Choice) -> dict[str, object]:
    """The decision as a worker's heartbeat carries it (JSON) and ``GET /info`` shows it: each candidate as the probe
    saw it, the winner and its token budget."""
    def measured(m: Measured) -> dict[str, object]:
        ran = not m.error
        return {"backend": m.backend, "kind": m.kind, "label_flips": m.label_flips if ran else None,
                "max_prob_diff": m.max_prob_diff if ran else None,
                "sentences_per_s": round(m.sentences_per_s, 1) if ran else None,
                "rounds": len(m.runs) if ran else None, "spread": round(m.spread, 3) if ran else None,
                "error": m.error or None}

    share = choice.others_cpu_share
    return {"backend": choice.backend, "max_batch_tokens": choice.max_batch_tokens,
            "measured_at_start": not choice.from_cache, "host_busy": choice.host_busy,
            "others_cpu_share": None if share is None else round(share, 3), "table": [measured(m) for m in choice.table],
            "budgets": {str(b): round(r, 1) for b, r in sorted(choice.budgets.items())}}


def table_lines(choice: Choice) -> list[str]:
    lines = [f"{'backend':14s} {'kind':12s} {'flips':>5s} {'max |dP|':>9s} {'sent/s':>8s} {'rounds, spread':>15s}"]
    for m in choice.table:
        if m.error:
            lines.append(f"{m.backend:14s} {'failed':12s} {m.error}")
            continue
        mark = "  <- chosen" if m.backend == choice.backend else ""
        lines.append(f"{m.backend:14s} {m.kind:12s} {m.label_flips:5d} "
                     f"{m.max_prob_diff:9.1e} {m.sentences_per_s:8.1f} {len(m.runs):6d}, {100 * m.spread:5.1f} %{mark}")
    if choice.budgets:
        lines.append("token budgets for " + choice.backend + ": " + ", ".join(
            f"{b}: {r:.1f}/s" for b, r in sorted(choice.budgets.items())) + f" -> {choice.max_batch_tokens}")
    if choice.others_cpu_share is not None:
        lines.append(f"other processes used {100 * choice.others_cpu_share:.0f} % of the CPUs meanwhile"
                     + (" (a busy host)" if choice.host_busy else ""))
    return lines


class DecisionCache:
    """One JSON file per (model, CPU, settings) key, written atomically (temp file + rename)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @staticmethod
    def key(parts: dict[str, object]) -> str:
        return hashlib.sha256(json.dumps({"format": CHOICE_FORMAT, **parts}, sort_keys=True).encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / f"{key[:32]}.json"

    def load(self, key: str) -> Choice | None:
        path = self.path(key)
        try:
            raw = json.loads(path.read_text())
            if raw.get("key") != key:
                return None
            table = [Measured(**m) for m in raw["table"]]
            budgets = {int(b): float(r) for b, r in raw["budgets"].items()}
            share = raw.get("others_cpu_share")
            return Choice(str(raw["backend"]), int(raw["max_batch_tokens"]), table, budgets, from_cache=str(path),
                          others_cpu_share=None if share is None else float(share))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable backend decision %s (%s): measuring again", path, exc)
            return None

    def save(self, key: str, choice: Choice, parts: dict[str, object]) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        raw = {"key": key, "inputs": parts, "backend": choice.backend, "max_batch_tokens": choice.max_batch_tokens,
               "table": [asdict(m) for m in choice.table], "budgets": choice.budgets,
               "others_cpu_share": choice.others_cpu_share}
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".choice.", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(raw, f, indent=2)  # all JSON already: key() dumped the same parts, the rest is numbers, text
        os.chmod(temp, 0o644)  # mkstemp makes it private; workers running as other users read it too
        os.replace(temp, self.path(key))
        return self.path(key)
