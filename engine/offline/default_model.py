"""The MODEL to serve when none is given: the settings' default hub model (DistilBERT fine-tuned on SST-2: real
sentiment) when the Hugging Face Hub answers for it; only when it cannot be reached, the offline bench model (written
if missing) — said loudly on stderr, with the reason and the fix, because its random weights give meaningless labels.

    python -m engine.offline.default_model
        scripts/run: print the choice on stdout (the hub id, or models/bench).
    python -m engine.offline.default_model --link /models/default --bench /models/bench
        compose's model-init: resolve MODEL (unset: the choice above; a hub id: downloaded at MODEL_REVISION into
        HF_HOME; a directory: as it is) once, and point the link at its files, which the workers load (offline).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.model_source import resolve_model, revision_refusal
from engine.runtimes import ModelLoadError, first_line
from engine.settings import ModelSettings

BENCH_DIR = Path("models/bench")
HUB_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Choice:
    model: str
    warning: str | None = None  # set when the fallback was taken


def hub_default() -> str:
    return ModelSettings.model_fields["model"].default


def ask_hub(model: str, revision: str | None = None) -> None:
    """Raise unless the Hub (HF_ENDPOINT, with the machine's token and proxies) describes ``model``."""
    from huggingface_hub import model_info

    model_info(model, revision=revision, timeout=HUB_TIMEOUT_S)


def write_bench(directory: Path) -> None:
    from engine.offline.make_model import main as make_model

    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the answer only
        make_model(["bench", str(directory), "--if-missing"])


def choose(model: str, *, ask: Callable[[str], None] = ask_hub, fallback: Callable[[Path], None] = write_bench,
           bench_dir: Path = BENCH_DIR, fix: str = "MODEL=/path/to/model scripts/run",
           revision: str | None = None) -> Choice:
    """``revision`` (MODEL_REVISION, which ``ask`` asks for): a pinned hub revision has no offline stand-in, so
    without the Hub it is an error (ModelLoadError), not the bench model."""
    try:
        ask(model)
    except Exception as exc:  # noqa: BLE001 -- any failure to reach the Hub means the same fallback; it is reported
        if revision:
            raise ModelLoadError(
                f"MODEL_REVISION={revision} pins a revision of {model}, but the Hugging Face Hub cannot be reached for "
                f"it ({type(exc).__name__}: {first_line(exc)}): give this machine access to the Hub, or unset "
                "MODEL_REVISION to serve the offline bench model (random weights) instead") from exc
        fallback(bench_dir)
        bar = "!" * 100
        return Choice(str(bench_dir), "\n".join([
            bar,
            f"!! The Hugging Face Hub cannot be reached for {model} ({type(exc).__name__}: {first_line(exc)}).",
            f"!! Serving the OFFLINE BENCH MODEL {bench_dir} instead: RANDOM WEIGHTS, ITS LABELS ARE MEANINGLESS.",
            "!! Fix: give this machine access to huggingface.co (or HF_ENDPOINT, a mirror), or set MODEL to a",
            f"!!      trained model directory (one saved with save_pretrained), e.g. {fix}",
            bar]))
    return Choice(model)


def link_to(target: Path, link: Path) -> None:
    """Point ``link`` at ``target`` (replaced atomically; relative when both are on the same volume)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    target = target.absolute()
    try:
        pointer = Path(os.path.relpath(target, link.parent.absolute()))
        if pointer.parts and pointer.parts[0] == "..":
            pointer = target
    except ValueError:
        pointer = target
    temporary = link.with_name(f".{link.name}.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(pointer, target_is_directory=True)
    os.replace(temporary, link)


def resolve_into(link: Path, bench_dir: Path, environ: dict[str, str], *,
                 ask: Callable[[str], None] | None = None, fallback: Callable[[Path], None] = write_bench,
                 resolve: Callable[[str, str | None], Path] = lambda m, r: resolve_model(m, r).path) -> str:
    """compose's model-init: the model the workers are to serve, resolved once and linked at ``link``. Returns what
    was linked, for the log; raises ModelLoadError (a model that cannot be had) or ValueError (MODEL_REVISION with a
    directory)."""
    model = environ.get("MODEL") or None
    revision = environ.get("MODEL_REVISION") or None
    if model is None:
        model = hub_default()
        choice = choose(model, ask=ask or (lambda m: ask_hub(m, revision)), fallback=fallback, bench_dir=bench_dir,
                        fix="MODEL=<hub id or mounted directory> docker compose up", revision=revision)
        if choice.warning:
            print(choice.warning, file=sys.stderr, flush=True)
            link_to(bench_dir, link)
            return f"{link} -> {bench_dir} (the OFFLINE BENCH MODEL: random weights)"
    refusal = revision_refusal(model, revision)
    if refusal:
        raise ValueError(refusal)
    target = resolve(model, revision)
    link_to(target, link)
    at = f" at revision {revision}" if revision else ""
    return f"{link} -> {target} ({model}{at})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.offline.default_model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--link", type=Path, help="resolve MODEL (unset: the default choice) and link its files here")
    parser.add_argument("--bench", type=Path, default=BENCH_DIR, help=f"where the bench model goes (default {BENCH_DIR})")
    args = parser.parse_args(argv)
    if args.link is not None:
        try:
            print(resolve_into(args.link, args.bench, dict(os.environ)), flush=True)
        except ValueError as exc:
            print(f"invalid settings: {exc}", file=sys.stderr)
            return 2
        except ModelLoadError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    revision = os.environ.get("MODEL_REVISION") or None
    try:
        choice = choose(hub_default(), ask=lambda m: ask_hub(m, revision), bench_dir=args.bench, revision=revision)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if choice.warning:
        print(choice.warning, file=sys.stderr, flush=True)
    else:
        print(f"MODEL not set: serving {choice.model} from the Hugging Face Hub", file=sys.stderr, flush=True)
    print(choice.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
