"""The Open Inference Protocol's REST routes (KServe v2, as Triton, KServe, MLServer and OpenVINO Model Server
speak it), so that tritonclient, the KServe SDK and perf_analyzer work against the service unchanged: health,
server and model metadata, Triton's model configuration, and infer (api/oip_codec.py reads and writes its
messages). One model, named SERVED_MODEL_NAME, version "1"; errors carry the protocol's ``{"error": "..."}``
(api/errors.py)."""

# No `from __future__ import annotations`: FastAPI reads the handlers' signatures at definition time.

import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from api.errors import OIP_PREFIX, ErrorKind, ServiceError, error_responses
from api.info import API_VERSION
from api.oip_codec import HEADER_LENGTH, OUTPUTS, PAIR, TEXT, InferResponse, encode_infer, infer_models, parse_infer
from api.queries import Form, Job
from api.routes import PREDICT_ERRORS, guard, live_view, run_job, services, timing_headers
from api.settings import ApiSettings

VERSION = "1"
PLATFORM = "sentimentalyzer"
_TRITON_TYPES = {"BYTES": "TYPE_STRING", "FP32": "TYPE_FP32"}


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


def add_oip_routes(app: FastAPI, settings: ApiSettings, text: Any) -> None:
    """The /v2 routes for the model named ``settings.served_model_name``; ``text``: the API's text type
    (api/schemas.py), which every element of a BYTES input must be."""
    name = settings.served_model_name
    models = infer_models(text, settings.max_batch_texts)
    guarded = guard(settings)
    errors = (ErrorKind.UNAVAILABLE, ErrorKind.NOT_FOUND)
    tensor = [{"name": TEXT, "datatype": "BYTES", "shape": [-1]}]
    outputs = [{"name": out, "datatype": datatype, "shape": [-1]} for out, datatype in OUTPUTS.items()]

    def model_named(model: str, version: str = VERSION) -> None:
        if model != name or version != VERSION:
            raise ServiceError(ErrorKind.NOT_FOUND, f"no model {model!r} version {version!r} here: this server "
                               f"serves {name!r} version {VERSION!r}")

    async def server_metadata() -> dict[str, Any]:
        return {"name": PLATFORM, "version": API_VERSION, "extensions": ["binary_tensor_data", "model_configuration"]}

    async def live() -> dict[str, bool]:
        return {"live": True}

    async def server_ready(request: Request) -> dict[str, bool]:
        await live_view(services(request))
        return {"ready": True}

    async def model_metadata(model: str, version: str = VERSION) -> dict[str, Any]:
        model_named(model, version)
        return {"name": name, "versions": [VERSION], "platform": PLATFORM, "inputs": tensor, "outputs": outputs}

    async def model_config(model: str, version: str = VERSION) -> dict[str, Any]:
        """Triton's model configuration (what perf_analyzer reads): no batch dimension of its own, any shape."""
        model_named(model, version)
        return {"name": name, "platform": PLATFORM, "max_batch_size": 0,
                "input": [{"name": t["name"], "data_type": _TRITON_TYPES[t["datatype"]], "dims": [-1]}
                          for t in tensor],
                "output": [{"name": o["name"], "data_type": _TRITON_TYPES[o["datatype"]], "dims": [-1]}
                           for o in outputs]}

    async def model_ready(request: Request, model: str, version: str = VERSION) -> dict[str, Any]:
        model_named(model, version)
        await live_view(services(request))
        return {"name": name, "ready": True}

    async def infer(request: Request, model: str, version: str = VERSION) -> Response:
        started = time.perf_counter()
        model_named(model, version)
        call = parse_infer(await request.body(), request.headers.get(HEADER_LENGTH), models, settings.max_batch_texts)
        s = services(request)
        outcome = await run_job(s, Job(call.queries, Form.BATCH, ranked=call.top_k is not None), request)
        body, headers = encode_infer(call, outcome.predictions, name, VERSION)
        return Response(body, headers={**headers, **timing_headers(outcome, started, settings.cache_ttl_s > 0)})

    def route(path: str, handler: Callable[..., Any], summary: str, *, method: str = "GET",
              status_errors: tuple[ErrorKind, ...] = errors, ok: dict[int | str, Any] | None = None,
              **extra: Any) -> None:
        app.add_api_route(f"{OIP_PREFIX}{path}", handler, methods=[method], summary=summary, tags=["open inference"],
                          responses={**(ok or {}), **error_responses(*status_errors, oip=True)}, **extra)

    route("", server_metadata, "Server metadata (Open Inference Protocol)", status_errors=())
    route("/health/live", live, "The process is alive", status_errors=())
    route("/health/ready", server_ready, "Redis reachable and at least one live worker",
          status_errors=(ErrorKind.UNAVAILABLE,))
    for versioned in ("", "/versions/{version}"):
        route(f"/models/{{model}}{versioned}", model_metadata, "Model metadata: inputs and outputs",
              status_errors=(ErrorKind.NOT_FOUND,))
        route(f"/models/{{model}}{versioned}/config", model_config, "Triton's model configuration",
              status_errors=(ErrorKind.NOT_FOUND,))
        route(f"/models/{{model}}{versioned}/ready", model_ready, "The model can answer", status_errors=errors)
        route(f"/models/{{model}}{versioned}/infer", infer, "Classify a BYTES tensor of texts", method="POST",
              status_errors=(*PREDICT_ERRORS, ErrorKind.NOT_FOUND,
                             *((ErrorKind.UNAUTHORIZED,) if settings.api_key else ())),
              dependencies=guarded, response_class=JSONResponse,
              ok={200: {"model": InferResponse, "description": "The outputs (JSON, or JSON + binary tensor data)"}},
              openapi_extra={"requestBody": {
                  "required": True, "content": {"application/json": {
                      "schema": _inline(models.request.model_json_schema())}}}},
              description=f"Input {TEXT!r} (BYTES, any shape; {PAIR!r} of the same shape for pairs), outputs "
                          "'label' (BYTES) and 'score' (FP32) of that shape ([..., top_k] with the request "
                          "parameter top_k). JSON, or JSON followed by binary tensor data "
                          f"({HEADER_LENGTH}); outputs as binary data where asked.")
