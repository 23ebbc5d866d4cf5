"""``python -m naive``: the baseline server on NaiveSettings.port (8001)."""

import logging
import sys

import uvicorn

from common.cli import parse_into_environment
from common.logs import setup_logging
from common.settings import load_or_exit
from engine.runtimes import ModelLoadError
from naive.settings import NaiveSettings

DESCRIPTION = ("The naive baseline: the model in the web process, one forward pass per request (what the benchmarks "
               "compare the service against). Same request and response formats as the API.")


def main(argv: list[str] | None = None, prog: str = "python -m naive") -> int:
    parse_into_environment([NaiveSettings], argv, prog=prog, description=DESCRIPTION)
    settings = load_or_exit(NaiveSettings)
    setup_logging(settings.log_level, "naive", settings.log_format)
    try:
        # log_config=None: uvicorn's lines go through our handler, in LOG_FORMAT's format.
        uvicorn.run("naive.app:create_naive_app_from_env", factory=True, host=settings.host, port=settings.port,
                    loop="uvloop", http="httptools", log_level=settings.log_level.lower(), access_log=False,
                    log_config=None)
    except ModelLoadError as exc:
        logging.getLogger("naive").error("%s", exc)  # a record like any other: JSON with LOG_FORMAT=json
        return 2
    return 0


# Guarded: BACKEND=auto measures backends in a spawned child, which imports this module as __mp_main__.
if __name__ == "__main__":
    sys.exit(main())
