"""Cross-origin calls from browsers (CORS_ALLOW_ORIGINS, api/settings.py): Starlette's CORSMiddleware for the
origins allowed, and nothing at all without them (no per-request cost; a preflight then gets the 405 of a route
that has no OPTIONS)."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from api.protocols.oip_codec import HEADER_LENGTH

METHODS = ["GET", "POST"]
# What a page's call may send beyond the CORS-safelisted headers: JSON bodies, the API key, its own request id, a
# gzip body, and the Open Inference Protocol's binary framing.
REQUEST_HEADERS = ["Content-Type", "Authorization", "X-Request-ID", "Content-Encoding", HEADER_LENGTH]
# What a page may read of an answer: where the time went (api/handling.py), the cache's verdict, the binary framing.
EXPOSED_HEADERS = ["X-Request-ID", "X-Queue-Time", "X-Inference-Time", "X-Total-Time", "X-Cache", HEADER_LENGTH]


def origins_of(setting: str | None) -> list[str]:
    """CORS_ALLOW_ORIGINS's origins (validated by its pattern); empty when unset."""
    return [origin.strip() for origin in (setting or "").split(",") if origin.strip()]


def allow_origins(app: FastAPI, setting: str | None) -> None:
    """Answer preflights and mark answers for the origins of ``setting``; without any, leave the app as it is.
    No credentials mode: the API key travels in Authorization, which a page sets itself (allowed above), not in
    cookies."""
    origins = origins_of(setting)
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=METHODS,
                           allow_headers=REQUEST_HEADERS, expose_headers=EXPOSED_HEADERS)
