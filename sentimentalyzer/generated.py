"""The command line of a generated document (docs/configuration.md, docs/openapi.json): write it, check it or print
it. Each document's module renders it; this owns the three modes and their exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def document_main(argv: Sequence[str] | None, *, command: str, document: Path, source: str,
                  render: Callable[[], str]) -> int:
    """``document``: its path in a checkout; ``source``: what it is generated from, for ``--help``."""
    parser = argparse.ArgumentParser(prog=command, description=f"Write {document} from {source}.")
    parser.add_argument("--output", type=Path, help=f"where to write it (default: {document} of this checkout)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="write nothing; exit 1 if it is out of date")
    mode.add_argument("--stdout", action="store_true", help="print it instead of writing it")
    args = parser.parse_args(argv)
    content = render()
    if args.stdout:
        sys.stdout.write(content)
        return 0
    path = args.output or _in_checkout(document)
    if args.check:
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current != content:
            print(f"{path} is out of date: run `{command}`", file=sys.stderr)
            return 1
        print(f"{path} is up to date")
        return 0
    path.write_text(content, encoding="utf-8")
    print(f"wrote {path}")
    return 0


def _in_checkout(document: Path) -> Path:
    if not (ROOT / "pyproject.toml").is_file():
        raise SystemExit(f"not in a checkout of the project: give the path with --output (e.g. {document})")
    return ROOT / document
