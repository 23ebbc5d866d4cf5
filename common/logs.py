"""Logging set-up shared by the entry points."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit


def setup_logging(level: str, name: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s %(levelname)s {name} %(name)s: %(message)s",
        force=True,
    )


def redact_url(url: str) -> str:
    """``url`` fit to print: its password replaced (redis://:secret@host -> redis://:***@host)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
