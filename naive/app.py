"""The naive server: the model lives in the web process and every request is its own forward pass. It speaks the
API's /predict and /predict/batch through the same protocol modules (api/protocols/), answering each job itself."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool

from api.encoding import GzipResponses
from api.errors import ErrorKind, ServiceError, install_error_handlers, shown
from api.limits import BodySizeLimit
from api.protocols import request_models
from api.protocols.predict import add_body_routes
from api.protocols.spec import Job
from common.keys import DEFAULT_MODEL_NAME
from engine.predictor import Predictor
from naive.settings import NaiveSettings


def create_naive_app(settings: NaiveSettings, predictor: Predictor) -> FastAPI:
    models = request_models(settings, max_top_k=len(predictor.card.labels))
    app = FastAPI(title="Sentimentalyzer naive baseline", version="1.0.0",
                  summary="One forward pass per request, no batching (benchmark baseline).")
    install_error_handlers(app, shape_keys=tuple(models.shapes))
    card = predictor.card

    def run(job: Job) -> Any:
        """The whole request in one forward pass, refused as the workers refuse what the model cannot answer."""
        if job.model not in (None, DEFAULT_MODEL_NAME):  # one model, under the API's default name
            raise ServiceError(ErrorKind.NOT_FOUND, f"no model {shown(job.model)} here: the naive server serves one "
                               f"model, named {DEFAULT_MODEL_NAME!r} (or leave 'model' out)")
        encodings = predictor.tokenize(job.queries)
        for i, (query, encoding) in enumerate(zip(job.queries, encodings)):
            why = card.refusal(query.options, len(encoding))
            if why is not None:
                raise ServiceError(ErrorKind.VALIDATION, f"text {i}: {why}")
        return job.render(predictor.run(encodings, [q.options for q in job.queries]))

    # The model call runs in the thread pool so that it does not block the event loop (FastAPI's usual
    # idiom for blocking work); the batch route is one forward pass over all the texts of the call.
    async def answer(job: Job, request: Request) -> Any:
        return await run_in_threadpool(run, job)

    add_body_routes(app, models, answer,
                    errors=(ErrorKind.VALIDATION, ErrorKind.PAYLOAD_TOO_LARGE, ErrorKind.UNSUPPORTED_MEDIA_TYPE,
                            ErrorKind.NOT_FOUND))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready", "backend": predictor.backend}  # BACKEND=auto: the one it chose

    # The API's HTTP conventions where they apply: gzip bodies in (the limit), gzip answers out, 415 for a body not
    # sent as JSON (the error handlers). No CORS: a benchmark baseline, not for browsers.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(GzipResponses)
    return app


def create_naive_app_from_env() -> FastAPI:
    from common.logs import setup_logging
    from engine.autotune.probe import ProbePolicy
    from engine.hf_predictor import TransformersPredictor

    settings = NaiveSettings()
    setup_logging(settings.log_level, "naive", settings.log_format)
    # BACKEND=auto measures candidates the way this server runs them: one text per pass.
    predictor = TransformersPredictor(settings, probe=ProbePolicy.of(settings, 1, 0))
    predictor.warm_up(1)
    return create_naive_app(settings, predictor)
