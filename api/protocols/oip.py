"""The Open Inference Protocol's REST routes (KServe v2, as Triton, KServe, MLServer and OpenVINO Model Server
speak it), so that tritonclient, the KServe SDK and perf_analyzer work against the service unchanged: health,
server and model metadata, Triton's model configuration, and infer (api/protocols/oip_codec.py reads and writes its
messages). One model, named SERVED_MODEL_NAME, version "1"; errors carry the protocol's ``{"error": "..."}``
(api/errors.py)."""

# No `from __future__ import annotations`: FastAPI reads the handlers' signatures at definition time.

import time
from functools import partial
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from api.errors import OIP_PREFIX, ErrorKind, ServiceError, error_responses, shown
from api.handling import PREDICT_ERRORS, live_view, run_job, services, timing_headers
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
from api.settings import ApiSettings

VERSION = "1"
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
    await live_view(services(request))
    return {"ready": True}


def _triton_tensors(tensors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": t["name"], "data_type": _TRITON_TYPES[t["datatype"]], "dims": [-1]} for t in tensors]


class ServedModel:
    """The one model the /v2 model routes serve, and their handlers: bound methods, which FastAPI reads without
    ``self`` (their names make the routes' OpenAPI operation ids)."""

    def __init__(self, settings: ApiSettings) -> None:
        self.name = settings.served_model_name
        self.settings = settings
        self.models = infer_models(text_type(settings), settings.max_batch_texts, settings.max_text_chars)

    def check(self, model: str, version: str) -> None:
        if model != self.name or version != VERSION:
            raise ServiceError(ErrorKind.NOT_FOUND, f"no model {shown(model)} version {shown(version)} here: this "
                               f"server serves {self.name!r} version {VERSION!r}")

    async def model_metadata(self, model: str, version: str = VERSION) -> dict[str, Any]:
        self.check(model, version)
        return {"name": self.name, "versions": [VERSION], "platform": PLATFORM, "inputs": INPUT_TENSORS,
                "outputs": OUTPUT_TENSORS}

    async def model_config(self, model: str, version: str = VERSION) -> dict[str, Any]:
        """Triton's model configuration (what perf_analyzer reads): no batch dimension of its own, any shape."""
        self.check(model, version)
        return {"name": self.name, "platform": PLATFORM, "max_batch_size": 0,
                "input": _triton_tensors(INPUT_TENSORS), "output": _triton_tensors(OUTPUT_TENSORS)}

    async def model_ready(self, request: Request, model: str, version: str = VERSION) -> dict[str, Any]:
        self.check(model, version)
        await live_view(services(request))
        return {"name": self.name, "ready": True}

    async def infer(self, request: Request, model: str, version: str = VERSION) -> Response:
        started = time.perf_counter()
        self.check(model, version)
        settings = self.settings
        call = parse_infer(await request.body(), request.headers.get(HEADER_LENGTH), self.models,
                           settings.max_batch_texts)
        job = Job(call.queries, partial(encode_infer, call, model_name=self.name, version=VERSION))
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
    """The /v2 routes for the model named ``settings.served_model_name``."""
    served = ServedModel(settings)
    route = partial(_route, app)
    route("", server_metadata, "Server metadata (Open Inference Protocol)", status_errors=())
    route("/health/live", live, "The process is alive", status_errors=())
    route("/health/ready", server_ready, "Redis reachable and at least one live worker",
          status_errors=(ErrorKind.UNAVAILABLE,))
    for versioned in ("", "/versions/{version}"):
        model = f"/models/{{model}}{versioned}"
        route(model, served.model_metadata, "Model metadata: inputs and outputs",
              status_errors=(ErrorKind.NOT_FOUND,))
        route(f"{model}/config", served.model_config, "Triton's model configuration",
              status_errors=(ErrorKind.NOT_FOUND,))
        route(f"{model}/ready", served.model_ready, "The model can answer")
        route(f"{model}/infer", served.infer, "Classify a BYTES tensor of texts", method="POST",
              status_errors=(*PREDICT_ERRORS, ErrorKind.NOT_FOUND), response_class=JSONResponse, description=INFER_DOC,
              ok={200: {"model": InferResponse, "description": "The outputs (JSON, or JSON + binary tensor data)",
                        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": _inline(served.models.request.model_json_schema())}}}})


PROTOCOL = Protocol(name="open inference protocol", add_routes=add_routes)
