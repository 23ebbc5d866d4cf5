"""The Open Inference Protocol's REST routes (KServe v2, as Triton, KServe, MLServer and OpenVINO Model Server
speak it), so that tritonclient, the KServe SDK and perf_analyzer work against the service unchanged: health,
server and model metadata, Triton's model configuration, and infer (api/protocols/oip_codec.py reads and writes its
messages). Every model served, by the name and version its workers announce (api/models.py); errors carry the
protocol's ``{"error": "..."}`` (api/errors.py)."""

# No `from __future__ import annotations`: FastAPI reads the handlers' signatures at definition time.

import time
from functools import partial
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from api.errors import OIP_PREFIX, ErrorKind, ServiceError, error_responses, shown
from api.handling import PREDICT_ERRORS, live_version, run_job, services, timing_headers
from api.info import API_VERSION
from api.protocols.fields import text_type
from api.protocols.oip_codec import (
    HEADER_LENGTH,
    OUTPUTS,
    PAIR,
    TEXT,
    InferResponse,
    encode_infer,
    infer_models,
    parse_infer,
)
from api.protocols.spec import Job, Protocol
from api.service_routes import readyz
from api.settings import ApiSettings
from common.keys import parse_version

PLATFORM = "sentimentalyzer"
INPUT_TENSORS = [{"name": TEXT, "datatype": "BYTES", "shape": [-1]}]
OUTPUT_TENSORS = [{"name": out, "datatype": datatype, "shape": [-1]} for out, datatype in OUTPUTS.items()]
_TRITON_TYPES = {"BYTES": "TYPE_STRING", "FP32": "TYPE_FP32"}
_NOT_SERVED = (ErrorKind.UNAVAILABLE, ErrorKind.NOT_FOUND)
INFER_DOC = (f"Input {TEXT!r} (BYTES, any shape; {PAIR!r} of the same shape for pairs), outputs 'label' (BYTES) "
             "and 'score' (FP32) of that shape ([..., top_k] with the request parameter top_k). JSON, or JSON "
             f"followed by binary tensor data ({HEADER_LENGTH}); outputs as binary data where asked.")


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its $defs inlined (OpenAPI's requestBody of a route that parses its own body)."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


async def server_metadata() -> dict[str, Any]:
    return {"name": PLATFORM, "version": API_VERSION, "extensions": ["binary_tensor_data", "model_configuration"]}


async def live() -> dict[str, bool]:
    return {"live": True}


async def server_ready(request: Request) -> dict[str, bool]:
    await readyz(request)  # any model with a live worker: the server can answer something
    return {"ready": True}


def _triton_tensors(tensors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": t["name"], "data_type": _TRITON_TYPES[t["datatype"]], "dims": [-1]} for t in tensors]


# The versioned routes' path parameter. The handlers read it from the path (``_pinned``), not from their signatures:
# a parameter the unversioned routes' handlers declared would be a query parameter there.
VERSION_PARAMETER = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"},
                     "description": "The version to pin (a worker's MODEL_VERSION)."}


def _pinned(request: Request) -> int | None:
    """The version a path pins, if it names one: a positive integer as the workers announce it (MODEL_VERSION);
    anything else is no version served here (404)."""
    text = request.path_params.get("version")
    if text is None:
        return None
    version = parse_version(text)
    if version is None:
        raise ServiceError(ErrorKind.NOT_FOUND, f"no version {shown(text)} here: versions are positive integers "
                           "without leading zeros")
    return version


class ServedModels:
    """The /v2 model routes' handlers, for whichever served model a path names (api/models.py): bound methods, which
    FastAPI reads without ``self`` (their names make the routes' OpenAPI operation ids)."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self.models = infer_models(text_type(settings), settings.max_batch_texts, settings.max_text_chars)

    async def repository(self, request: Request) -> dict[str, Any]:
        """Every model served here, its versions and whether it can answer now (the routing rule's version)."""
        router = services(request).models
        await router.refresh()
        listed = []
        for name in router.names():
            versions = router.versions(name)
            live = [v.version for v in versions if v.live]
            listed.append({"name": name, "versions": [str(v.version) for v in versions], "ready": bool(live),
                           "routed_version": str(max(live)) if live else None})
        return {"models": listed}

    async def repository_index(self, request: Request) -> list[dict[str, str]]:
        """Triton's repository index (tritonclient's get_model_repository_index): one entry per model version."""
        router = services(request).models
        await router.refresh()
        return [{"name": v.name, "version": str(v.version), "state": "READY" if v.live else "UNAVAILABLE",
                 "reason": "" if v.live else "no live worker"} for v in router.all_versions()]

    async def model_metadata(self, request: Request, model: str) -> dict[str, Any]:
        known = await services(request).models.find(model, _pinned(request))
        return {"name": model, "versions": [str(v) for v in sorted(known)], "platform": PLATFORM,
                "inputs": INPUT_TENSORS, "outputs": OUTPUT_TENSORS}

    async def model_config(self, request: Request, model: str) -> dict[str, Any]:
        """Triton's model configuration (what perf_analyzer reads): no batch dimension of its own, any shape."""
        await services(request).models.find(model, _pinned(request))
        return {"name": model, "platform": PLATFORM, "max_batch_size": 0,
                "input": _triton_tensors(INPUT_TENSORS), "output": _triton_tensors(OUTPUT_TENSORS)}

    async def model_ready(self, request: Request, model: str) -> dict[str, Any]:
        served = await live_version(services(request), model, _pinned(request))
        return {"name": model, "version": str(served.version), "ready": True}

    async def infer(self, request: Request, model: str) -> Response:
        started = time.perf_counter()
        pinned = _pinned(request)
        await services(request).models.find(model, pinned)  # 404 before the body is read
        settings = self.settings
        call = parse_infer(await request.body(), request.headers.get(HEADER_LENGTH), self.models,
                           settings.max_batch_texts)
        job = Job(call.queries, lambda answers: encode_infer(call, answers, model_name=model,
                                                             version=str(job.version)), model=model, version=pinned)
        outcome = await run_job(services(request), job, request)
        body, headers = job.render(outcome.predictions)
        return Response(body, headers={**headers, **timing_headers(outcome, started, settings.cache_ttl_s > 0)})


def _route(app: FastAPI, path: str, handler: Any, summary: str, *, method: str = "GET",
           status_errors: tuple[ErrorKind, ...] = _NOT_SERVED, ok: dict[int | str, Any] | None = None,
           **extra: Any) -> None:
    """A /v2 route, on the app itself (an included APIRouter costs every request a second layer of matching)."""
    app.add_api_route(f"{OIP_PREFIX}{path}", handler, methods=[method], summary=summary, tags=["open inference"],
                      responses={**(ok or {}), **error_responses(*status_errors, oip=True)}, **extra)


def add_routes(app: FastAPI, settings: ApiSettings) -> None:
    """The /v2 routes, for every model served (api/models.py)."""
    served = ServedModels(settings)
    route = partial(_route, app)
    route("", server_metadata, "Server metadata (Open Inference Protocol)", status_errors=())
    route("/health/live", live, "The process is alive", status_errors=())
    route("/health/ready", server_ready, "Redis reachable and a live worker of at least one model",
          status_errors=(ErrorKind.UNAVAILABLE,))
    route("/models", served.repository, "The models served, their versions, and whether each can answer",
          status_errors=(ErrorKind.UNAVAILABLE,))
    route("/repository/index", served.repository_index, "Triton's repository index: every model version and its "
          "state", method="POST", status_errors=(ErrorKind.UNAVAILABLE,))
    for versioned, parameters in (("", []), ("/versions/{version}", [VERSION_PARAMETER])):
        model = f"/models/{{model}}{versioned}"
        route(model, served.model_metadata, "Model metadata: inputs and outputs",
              status_errors=(ErrorKind.NOT_FOUND,), openapi_extra={"parameters": parameters})
        route(f"{model}/config", served.model_config, "Triton's model configuration",
              status_errors=(ErrorKind.NOT_FOUND,), openapi_extra={"parameters": parameters})
        route(f"{model}/ready", served.model_ready, "The model (version) can answer: a live worker serves it",
              openapi_extra={"parameters": parameters})
        route(f"{model}/infer", served.infer, "Classify a BYTES tensor of texts", method="POST",
              status_errors=PREDICT_ERRORS, response_class=JSONResponse, description=INFER_DOC,
              ok={200: {"model": InferResponse, "description": "The outputs (JSON, or JSON + binary tensor data)",
                        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
              openapi_extra={"parameters": parameters, "requestBody": {"required": True, "content": {
                  "application/json": {"schema": _inline(served.models.request.model_json_schema())}}}})


PROTOCOL = Protocol(name="open inference protocol", add_routes=add_routes)
