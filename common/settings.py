"""Settings, read from environment variables (names are the field names, case-insensitive).

What every process shares: Redis, key names, logging (``SharedSettings``) and the HTTP input limits of the API and
the naive server (``InputLimits``). Each process's own settings build on them in its package (``api/settings.py``,
``worker/settings.py``, ``naive/settings.py``; the model's in ``engine/settings.py``), and each entry point builds
its settings from the environment; nothing is read at import time. Every field's description states its trade-off.
"""

from __future__ import annotations

import re
import sys
from typing import Annotated, Literal, TypeVar

from pydantic import BeforeValidator, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.keys import DEFAULT_MODEL_NAME, MODEL_NAME_MAX, MODEL_NAME_PATTERN, Keys

# Names are the fields', case-insensitive, no prefix; variables no class reads are ignored (one environment serves
# every process of a deployment).
SETTINGS_CONFIG = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

S = TypeVar("S", bound=BaseSettings)

LogFormat = Literal["text", "json"]
LOG_FORMAT_HELP = ("`text`: one line per record for people (`<time> <LEVEL> <process> <logger>: <message>`). `json`: one "
                   "JSON object per line for log pipelines (time, level, process, logger, message, and the record's "
                   "fields as keys: the access log's, a pass's request ids), uvicorn's lines included.")

# Compose passes `VAR=` for a variable the user left unset (`${API_KEY:-}`): for an optional setting that means
# unset, not an empty key nobody can send or a number that does not parse.
EMPTY_IS_UNSET = BeforeValidator(lambda value: None if value == "" else value)

# What redis-py connects to: TCP (`redis://`), TLS (`rediss://`) or a Unix socket (`unix://`).
REDIS_URL_PATTERN = r"^(redis|rediss|unix)://"


class SharedSettings(BaseSettings):
    """Redis, key names and logging: the same for every process of a deployment."""

    model_config = SETTINGS_CONFIG

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        repr=False,  # may hold a password: not in the settings' repr (a log line or traceback that shows them)
        pattern=REDIS_URL_PATTERN,
        description="Redis server shared by all API processes and workers. `rediss://` for TLS; "
        "`redis://:password@host:port/db` for a password.",
    )
    redis_sentinels: Annotated[str | None, EMPTY_IS_UNSET] = Field(
        None,
        pattern=r"^\s*[^\s,:]+:\d+\s*(,\s*[^\s,:]+:\d+\s*)*$",
        description="Redis Sentinel addresses, `host:port[,host:port...]`: the queue's Redis is whichever master "
        "they name REDIS_SENTINEL_MASTER, and API processes and workers follow a failover without a restart "
        "(requests fail fast with 503 until the new master is elected). REDIS_URL then gives only the database, "
        "user, password and TLS (`rediss://`); its host is not used. Unset: REDIS_URL's server, no failover.",
    )
    redis_sentinel_master: str = Field(
        "mymaster",
        min_length=1,
        description="The master's name in the Sentinels' configuration (`sentinel monitor <name> ...`).",
    )
    redis_sentinel_password: Annotated[str | None, EMPTY_IS_UNSET] = Field(
        None,
        repr=False,
        description="Password of the Sentinels themselves (their `requirepass`), if they have one; the master's is "
        "REDIS_URL's.",
    )
    redis_connect_timeout_s: float = Field(
        1.0,
        gt=0,
        description="How long to wait for a TCP connection to Redis. Short: a dead Redis gives a fast 503 "
        "instead of piling up waiters; too short fails on a slow network.",
    )
    served_model_name: str = Field(
        DEFAULT_MODEL_NAME,
        pattern=MODEL_NAME_PATTERN,
        max_length=MODEL_NAME_MAX,
        description="A worker: the name it serves its model under (its own queue and keys; the name in "
        "`/v2/models/<name>/...` and in our JSON's `model` field). The API: the model a request that names none "
        "goes to (text-embeddings-inference's and the Inference API's bodies, ours without `model`). Other names "
        "are the other workers': a name no worker ever served answers 404.",
    )
    key_prefix: str = Field(
        "sentimentalyzer",
        description="Prefix of every Redis key. Lets several deployments share one Redis; the API and its "
        "workers must agree on it.",
    )
    reply_ttl_s: int = Field(
        60,
        ge=1,
        description="Expiry of reply lists. Replies nobody collects (client timed out) vanish after this; too "
        "short could expire a reply before a slow API reads it.",
    )
    log_level: str = Field("INFO", description="Python logging level of the process.")
    log_format: LogFormat = Field("text", description=LOG_FORMAT_HELP)

    def keys(self) -> Keys:
        return Keys(self.key_prefix)

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """REDIS_SENTINELS as (host, port) pairs; empty without Sentinel."""
        pairs = [part.strip().rsplit(":", 1) for part in (self.redis_sentinels or "").split(",") if part.strip()]
        return [(host, int(port)) for host, port in pairs]


class InputLimits(BaseSettings):
    """Validation limits of the HTTP API, shared by the batched API and the naive baseline."""

    model_config = SETTINGS_CONFIG

    max_text_chars: int = Field(
        2000,
        ge=1,
        description="Longest accepted text, in characters (longer: 422). Texts are also truncated to the "
        "model's maximum token length (512 for DistilBERT); a higher limit only adds tokenization work.",
    )
    max_batch_texts: int = Field(
        64,
        ge=1,
        le=4096,
        description="Most texts in one `/predict/batch` call (more: 422). Each text is one queue item; large "
        "calls let one client fill many batches ahead of others.",
    )
    max_body_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="Largest accepted request body (larger: 413), checked before parsing: the bytes received and, "
        "for a gzip body (`Content-Encoding: gzip`), its decompressed size, refused as soon as it passes this "
        "(a decompression bomb is never inflated). Higher admits bigger batches and costs memory per request.",
    )


def load_or_exit(cls: type[S]) -> S:
    """Settings for an entry point from the environment; invalid or contradicting ones end the process (exit 2)
    with one line per problem naming the variable, the value it has and one that works, instead of a traceback.
    Secrets are never printed (API_KEY, passwords; a URL's password is masked)."""
    try:
        return cls()
    except ValidationError as exc:
        for line in error_lines(cls, exc):
            print(line, file=sys.stderr)
        raise SystemExit(2) from None


SECRET_PARTS = ("password", "secret", "token")  # a variable with one of these words, or ending in _KEY, is secret


def is_secret(name: str) -> bool:
    parts = name.lower().split("_")
    return parts[-1] == "key" or any(part in SECRET_PARTS for part in parts)


def masked_url(text: str) -> str:
    """``text`` with the password of a URL in it replaced by ***, even where the URL does not parse."""
    text = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*:)(.*)@", r"\1***@", text)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", text)


def shown(name: str, value: object) -> str:
    """A setting's value fit to print in an error."""
    return "<hidden>" if is_secret(name) else masked_url(str(value))


def error_lines(cls: type[BaseSettings], exc: ValidationError) -> list[str]:
    """One line per problem: ``invalid setting NAME=value: what is wrong; e.g. NAME=default (the default)`` for one
    variable, ``invalid settings: <the check's message>`` for a check across several (its message names them)."""
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        if not field:  # a model validator: its ValueError's message names the variables and what works
            cause = (error.get("ctx") or {}).get("error")
            lines.append(f"invalid settings: {cause if cause is not None else error['msg']}")
            continue
        name = field.upper()
        given = f"={shown(name, error['input'])}" if isinstance(error.get("input"), str | int | float) else ""
        lines.append(f"invalid setting {name}{given}: {error['msg']}{working_value(cls, field)}")
    return lines


def working_value(cls: type[BaseSettings], field: str) -> str:
    """``; e.g. NAME=<default> (the default)``, or ``; unset NAME for the default`` where the default is none."""
    info = cls.model_fields.get(field)
    if info is None:
        return ""
    name = field.upper()
    default = info.get_default(call_default_factory=True)
    if default is None or default == "" or is_secret(name):
        return f"; or unset {name} for the default"
    if isinstance(default, bool):
        default = str(default).lower()
    return f"; e.g. {name}={shown(name, default)} (the default)"
