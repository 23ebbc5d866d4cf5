"""The worker's predictor, as its settings name it: a Hugging Face model (engine.hf_predictor), or the simulated
cost model (engine.simulated), which imports no torch."""

from __future__ import annotations

import logging

from engine.predictor import Predictor
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)


def load_predictor(settings: WorkerSettings) -> Predictor:
    """The worker's predictor for ``BACKEND``; BACKEND=auto measures candidates at the worker's batch policy."""
    if settings.backend == "simulated":
        from engine.simulated import SIMULATED_LABEL, SimulatedPredictor

        log.warning("BACKEND=simulated: no model; every pass sleeps %.1f + %.1f ms/text and answers %r",
                    settings.simulated_batch_ms, settings.simulated_text_ms, SIMULATED_LABEL)
        return SimulatedPredictor(settings.simulated_batch_ms, settings.simulated_text_ms)
    from engine.autotune.probe import ProbePolicy
    from engine.hf_predictor import TransformersPredictor

    probe = ProbePolicy.of(settings, settings.max_batch_size, settings.max_batch_tokens)
    return TransformersPredictor(settings, probe=probe)
