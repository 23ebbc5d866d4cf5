"""Logging set-up shared by the entry points."""

from __future__ import annotations

import logging


def setup_logging(level: str, name: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s %(levelname)s {name} %(name)s: %(message)s",
        force=True,
    )
