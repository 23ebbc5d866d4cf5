"""The HTTP protocols the service speaks, one module each (api/protocols/spec.py says what a protocol brings).
Adding one: its module, and its record in PROTOCOLS."""

from __future__ import annotations

from api.protocols import inference_api, oip, ours, tei
from api.protocols.predict import RequestModels
from api.protocols.predict import request_models as _request_models
from api.protocols.spec import Protocol
from common.settings import InputLimits

# The order shows: POST /predict's bodies in OpenAPI and in the error for a body of no shape; a dialect comes after
# the protocol whose body it extends.
PROTOCOLS: tuple[Protocol, ...] = (ours.PROTOCOL, tei.PROTOCOL, inference_api.PROTOCOL, oip.PROTOCOL)


def request_models(limits: InputLimits, *, max_top_k: int | None = None) -> RequestModels:
    """The registered protocols' request bodies for these limits; ``max_top_k``: the model's labels, where known."""
    return _request_models(PROTOCOLS, limits, max_top_k)
