"""Where a benchmark ran: the CPU and the commit, recorded with every result."""

from __future__ import annotations

import subprocess
from pathlib import Path

from engine.cpu import cpu_model
from harness.processes import ROOT

__all__ = ["cpu_model", "git_commit"]


def git_commit(checkout: Path = ROOT, ignore: tuple[str, ...] = ()) -> str:
    """The commit ``checkout`` (default: this one) has checked out, ``+dirty`` with changes to tracked files other
    than the ``ignore`` paths (relative to the checkout: e.g. the files a run writes before it records itself)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                *(f":!{path}" for path in ignore)], cwd=checkout,
                               capture_output=True, text=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
