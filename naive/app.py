"""The naive server: the model lives in the web process and every request is its own forward pass."""

# No `from __future__ import annotations`: FastAPI resolves the per-app request models at definition time.

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from api.errors import ErrorKind, error_responses, install_error_handlers
from api.limits import BodySizeLimit
from api.schemas import BatchPredictionOut, PredictionOut, request_models
from common.settings import NaiveSettings
from worker.predictor import Predictor


def create_naive_app(settings: NaiveSettings, predictor: Predictor) -> FastAPI:
    models = request_models(settings)
    app = FastAPI(title="Sentimentalyzer naive baseline", version="1.0.0",
                  summary="One forward pass per request, no batching (benchmark baseline).")
    install_error_handlers(app)
    errors = error_responses(ErrorKind.VALIDATION, ErrorKind.PAYLOAD_TOO_LARGE)

    def to_out(texts: list[str]) -> list[PredictionOut]:
        return [PredictionOut(label=p.label, score=p.score) for p in predictor.predict(texts)]

    # The model call runs in the thread pool so that it does not block the event loop (FastAPI's usual
    # idiom for blocking work); the batch route is one forward pass over all the texts of the call.
    @app.post("/predict", response_model=PredictionOut, responses=errors)
    async def predict(body: models.single) -> PredictionOut:  # type: ignore[valid-type]
        return (await run_in_threadpool(to_out, [body.text]))[0]  # type: ignore[attr-defined]

    @app.post("/predict/batch", response_model=BatchPredictionOut, responses=errors)
    async def predict_batch(body: models.batch) -> BatchPredictionOut:  # type: ignore[valid-type]
        return BatchPredictionOut(results=await run_in_threadpool(to_out, body.texts))  # type: ignore[attr-defined]

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready", "backend": predictor.backend}  # BACKEND=auto: the one it chose

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app


def create_naive_app_from_env() -> FastAPI:
    from common.logs import setup_logging
    from worker.predictor import TransformersPredictor
    from worker.runtimes.auto import ProbePolicy

    settings = NaiveSettings()
    setup_logging(settings.log_level, "naive")
    # BACKEND=auto measures candidates the way this server runs them: one text per pass.
    predictor = TransformersPredictor(settings, probe=ProbePolicy(1, 0, settings.backend_allow_approximate))
    predictor.warm_up(1)
    return create_naive_app(settings, predictor)
