"""API entry point: ``python -m api`` runs uvicorn with ``api_processes`` worker processes."""

from __future__ import annotations

import signal
import sys

import uvicorn

from common.settings import ApiSettings


def main() -> int:
    settings = ApiSettings()
    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal under the handlers it found at start, so
    # the default ones would turn a clean drain into death-by-signal (exit 143). A drained shutdown exits 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    uvicorn.run(
        "api.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.api_processes,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level.lower(),
        access_log=False,  # one log line per request costs more than the request itself at high rates
        # SIGTERM: stop accepting, let admitted requests finish (they end by their deadline at the latest).
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 2,
        limit_concurrency=None,  # admission is the gateway's job (429 with Retry-After, not 503)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
