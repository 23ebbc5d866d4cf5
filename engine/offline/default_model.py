"""``python -m engine.offline.default_model``: the MODEL ``scripts/run`` serves when none is given, printed on stdout.

The settings' default hub model (DistilBERT fine-tuned on SST-2: real sentiment) when the Hugging Face Hub answers
for it; only when it cannot be reached, the offline bench model (written to ``models/bench`` if missing) — said
loudly on stderr, with the reason and the fix, because its random weights give meaningless labels.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.runtimes import first_line
from engine.settings import ModelSettings

BENCH_DIR = Path("models/bench")
HUB_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Choice:
    model: str
    warning: str | None = None  # set when the fallback was taken


def hub_default() -> str:
    return ModelSettings.model_fields["model"].default


def ask_hub(model: str) -> None:
    """Raise unless the Hub (HF_ENDPOINT, with the machine's token and proxies) describes ``model``."""
    from huggingface_hub import model_info

    model_info(model, timeout=HUB_TIMEOUT_S)


def write_bench(directory: Path) -> None:
    from engine.offline.make_model import main as make_model

    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the answer only
        make_model(["bench", str(directory), "--if-missing"])


def choose(model: str, *, ask: Callable[[str], None] = ask_hub,
           fallback: Callable[[Path], None] = write_bench) -> Choice:
    try:
        ask(model)
    except Exception as exc:  # noqa: BLE001 -- any failure to reach the Hub means the same fallback; it is reported
        fallback(BENCH_DIR)
        bar = "!" * 100
        return Choice(str(BENCH_DIR), "\n".join([
            bar,
            f"!! The Hugging Face Hub cannot be reached for {model} ({type(exc).__name__}: {first_line(exc)}).",
            f"!! Serving the OFFLINE BENCH MODEL {BENCH_DIR} instead: RANDOM WEIGHTS, ITS LABELS ARE MEANINGLESS.",
            "!! Fix: give this machine access to huggingface.co (or HF_ENDPOINT, a mirror), or set MODEL to a",
            "!!      trained model directory (one saved with save_pretrained), e.g. MODEL=/path/to/model scripts/run",
            bar]))
    return Choice(model)


def main() -> int:
    choice = choose(hub_default())
    if choice.warning:
        print(choice.warning, file=sys.stderr, flush=True)
    else:
        print(f"MODEL not set: serving {choice.model} from the Hugging Face Hub", file=sys.stderr, flush=True)
    print(choice.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
