"""API_KEY: with a key set, every request needs ``Authorization: Bearer <key>`` except the probes' and the docs'.

Deny by default: one ASGI middleware checks every request whose path is not in the open list, before anything else
looks at it, so a caller without the key learns nothing from its request (no 413, 415 or 422 about its body, which
is never read) and a route added later is guarded without a word. The OpenAPI document states it from the same
list: the bearer scheme, and on every operation not open its security requirement and its 401.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import OIP_PREFIX, ErrorKind, ErrorResponse, OipErrorResponse, ServiceError, error_response

# Probes (liveness and readiness: orchestrators and load balancers call them without credentials) and the API's
# documentation. /v2/models/<name>/ready is not a probe here: it names the served model (and 404s others).
PROBES = frozenset({"/healthz", "/readyz", "/health", f"{OIP_PREFIX}/health/live", f"{OIP_PREFIX}/health/ready"})
DOCS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})  # FastAPI's and fastapi-offline's
DOCS_ASSETS = "/static-offline-docs"  # the pages' scripts, styles and icon, served by the API itself
OPEN_PATHS = PROBES | DOCS

SCHEME = "HTTPBearer"  # its name in the OpenAPI document's securitySchemes
UNAUTHORIZED = "missing or wrong API key (Authorization: Bearer <key>)"
_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def is_open(path: str) -> bool:
    """Whether a request for ``path`` (or an OpenAPI path) is answered without the key."""
    return path in OPEN_PATHS or path.startswith(DOCS_ASSETS + "/")


class RequireApiKey:
    """Pure ASGI middleware: 401 for a request to a path that is not open without ``Authorization: Bearer <key>``,
    compared in constant time. Installed only with a key: without one, no cost at all."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.key = api_key.encode("ascii")  # visible ASCII (api/settings.py): the bytes a client sends

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_open(scope["path"]) or self._holds_key(scope):
            await self.app(scope, receive, send)
            return
        refusal = error_response(ServiceError(ErrorKind.UNAUTHORIZED, UNAUTHORIZED), {"WWW-Authenticate": "Bearer"},
                                 path=scope["path"])
        await refusal(scope, receive, send)

    def _holds_key(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":  # the first one, as Starlette's Headers.get reads it
                scheme, _, token = value.partition(b" ")  # RFC 6750: one or more spaces before the token
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)
        return False


def document_api_key(openapi: dict[str, Any]) -> None:
    """State the key in FastAPI's OpenAPI document (in place): the bearer scheme, and on every operation whose path
    is not open, the security requirement and the 401 (in the error shape of its path, api/errors.py)."""
    components = openapi.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SCHEME] = {"type": "http", "scheme": "bearer"}
    schemas = components.setdefault("schemas", {})
    for path, operations in openapi.get("paths", {}).items():
        if is_open(path):
            continue
        model = OipErrorResponse if path == OIP_PREFIX or path.startswith(OIP_PREFIX + "/") else ErrorResponse
        if model.__name__ not in schemas:  # documented by no other response: its schema, as FastAPI would add it
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        unauthorized = {"description": ErrorKind.UNAUTHORIZED.value, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}
        for method, operation in operations.items():
            if method in _HTTP_METHODS:
                operation["security"] = [{SCHEME: []}]
                operation.setdefault("responses", {})["401"] = unauthorized
