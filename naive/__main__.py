"""``python -m naive``: the baseline server on NaiveSettings.port (8001)."""

import sys

import uvicorn

from common.settings import NaiveSettings, load_or_exit
from worker.predictor import ModelLoadError

settings = load_or_exit(NaiveSettings)
try:
    uvicorn.run("naive.app:create_naive_app_from_env", factory=True, host=settings.host, port=settings.port,
                loop="uvloop", http="httptools", log_level=settings.log_level.lower(), access_log=False)
except ModelLoadError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
