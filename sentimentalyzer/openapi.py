"""``python -m sentimentalyzer.openapi``: write docs/openapi.json, the API's OpenAPI document at default settings.

The same document the API serves at ``GET /openapi.json`` (and renders at ``/docs``), for clients and code generators
that read the contract without running the service, as text-embeddings-inference publishes its own. It is built
from the app with every setting at its default, whatever this process's environment says; before a worker has
described the model, as here, ``top_k``'s maximum is MAX_TOP_K (a served document gives the model's label count).
``tests/unit/test_openapi_document.py`` fails when the committed document differs from what this writes.

    python -m sentimentalyzer.openapi           write docs/openapi.json (in this checkout)
    python -m sentimentalyzer.openapi --check   exit 1 if docs/openapi.json is out of date
    python -m sentimentalyzer.openapi --stdout  print the document
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from api.settings import ApiSettings
from sentimentalyzer.generated import document_main

COMMAND = "python -m sentimentalyzer.openapi"
DOCUMENT = Path("docs") / "openapi.json"


class _Defaults(ApiSettings):
    """ApiSettings read from nothing but its arguments: no environment variables, no .env file."""

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, **_others):  # type: ignore[no-untyped-def]
        return (init_settings,)


def default_settings() -> ApiSettings:
    """The API's settings at their defaults, whatever this process's environment says (which is left alone)."""
    return _Defaults()


def render() -> str:
    from api.app import create_app  # the app's imports (FastAPI, redis-py, prometheus-client) only when rendering

    return json.dumps(create_app(default_settings()).openapi(), indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    return document_main(argv, command=COMMAND, document=DOCUMENT, source="the app", render=render)


if __name__ == "__main__":
    sys.exit(main())
