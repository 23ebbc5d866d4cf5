"""The floor under the API's CPU per request (``python -m benchmarks.api_cpu --floor``): FastAPI and uvicorn as the
API runs them (uvloop, httptools, no access log), with one ``POST /predict`` route that validates a ``{"text"}`` body
against a pydantic model and answers a fixed prediction after ``API_FLOOR_DELAY_S`` (the service's latency, so that
as many requests are in flight and each event-loop wake-up serves as many as in the API). No middleware, no Redis,
no queue: a reference point for what the framework itself spends per request on this machine (it returns a dict
through FastAPI's response serialisation, which the API's routes skip, and pays a timer per request for the delay)."""

import asyncio
import os

from fastapi import FastAPI
from pydantic import BaseModel

DELAY_S = float(os.environ.get("API_FLOOR_DELAY_S", "0"))


class Body(BaseModel):
    text: str


app = FastAPI()


@app.post("/predict")
async def predict(body: Body) -> dict[str, object]:
    if DELAY_S:
        await asyncio.sleep(DELAY_S)
    return {"label": "POSITIVE", "score": 0.5}
