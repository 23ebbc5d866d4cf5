"""The naive baseline server's settings (``python -m naive``): the model's, the API's input limits, where to
listen."""

from __future__ import annotations

from pydantic import Field

from common.settings import LOG_FORMAT_HELP, InputLimits, LogFormat
from engine.settings import ModelSettings


class NaiveSettings(ModelSettings, InputLimits):
    """The naive server's own: where it listens."""

    log_level: str = Field("INFO", description="Python logging level of the process.")
    log_format: LogFormat = Field("text", description=LOG_FORMAT_HELP)
    host: str = Field("127.0.0.1", description="Address the naive server binds to.")
    port: int = Field(8001, ge=1, le=65535, description="Port the naive baseline listens on.")
