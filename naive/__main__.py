"""``python -m naive``: the baseline server on NaiveSettings.port (8001)."""

import sys

import uvicorn

from common.settings import load_or_exit
from engine.runtimes import ModelLoadError
from naive.settings import NaiveSettings


def main() -> int:
    settings = load_or_exit(NaiveSettings)
    try:
        uvicorn.run("naive.app:create_naive_app_from_env", factory=True, host=settings.host, port=settings.port,
                    loop="uvloop", http="httptools", log_level=settings.log_level.lower(), access_log=False)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


# Guarded: BACKEND=auto measures backends in a spawned child, which imports this module as __mp_main__.
if __name__ == "__main__":
    sys.exit(main())
