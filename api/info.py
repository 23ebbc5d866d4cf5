"""``GET /info``: what the service serves and how — the model (from the live workers' cards), its labels and token
limit, the backends the workers run, the batching and input limits, the versions. text-embeddings-inference's
``/info`` fields keep their names, so its clients read it unchanged; the rest is ours. Also the OpenAPI document's
one model-dependent limit: ``top_k``'s maximum, the model's number of labels."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, Field

from api.catalog import ModelView
from api.settings import ApiSettings
from common.model_card import ModelCard
from common.protocol import PROTOCOL_VERSION

API_VERSION = "1.1.0"


class ClassifierOut(BaseModel):
    id2label: dict[str, str]
    label2id: dict[str, int]


class ModelTypeOut(BaseModel):
    classifier: ClassifierOut


class ServedModelOut(BaseModel):
    model_id: str = Field(description="MODEL: the hub id or directory the workers loaded.")
    model_sha: str = Field(description="sha256 of the model's weights, config and tokenizer files.")
    model_revision: str | None = Field(None, description="The hub commit loaded (MODEL_REVISION resolved); null for "
                                       "a directory MODEL.")
    backend: str = Field(description="The runtime (BACKEND=auto: the one chosen).")
    labels: list[str]


class MeasuredOut(BaseModel):
    backend: str
    kind: str = Field(description="exact (PyTorch fp32's answers), approximate, or failed (see error).")
    label_flips: int | None = Field(description="Probe texts whose label differed from PyTorch fp32's.")
    max_prob_diff: float | None = Field(description="The largest probability difference from PyTorch fp32's.")
    sentences_per_s: float | None = Field(description="Probe sentences per second, in windows run as the worker "
                                          "runs them: the median of its rounds.")
    rounds: int | None = Field(None, description="Rounds it was timed in (every candidate in turn, per round).")
    spread: float | None = Field(None, description="(fastest - slowest round) / median: rounds are added while "
                                 "any candidate's exceeds 0.10, up to 5.")
    error: str | None = Field(description="Why it could not run the model.")


class AutoChoiceOut(BaseModel):
    backend: str = Field(description="The backend chosen.")
    max_batch_tokens: int = Field(description="The token budget chosen (or MAX_BATCH_TOKENS as set).")
    measured_at_start: bool = Field(description="Measured at this worker's start (false: read from the decision "
                                    "cached in EXPORT_CACHE_DIR, measured at an earlier start).")
    host_busy: bool = Field(False, description="Other processes used more than a quarter of the CPUs while it "
                            "measured: the figures may be off (delete the decision file to measure again).")
    others_cpu_share: float | None = Field(None, description="The share of all CPUs other processes used while it "
                                           "measured (Linux /proc/stat); null where unknown.")
    table: list[MeasuredOut] = Field(description="Every installed backend as the probe saw it.")
    budgets: dict[str, float] = Field(description="Token budget -> sentences/s of the chosen backend, when tuned.")


class InfoOut(BaseModel):
    model_id: str = Field(description="MODEL: the hub id or directory the workers loaded.", examples=["models/bench"])
    model_sha: str = Field(description="sha256 of the model's weights, config and tokenizer files: its revision's "
                           "content (the same for every copy of that revision).")
    model_revision: str | None = Field(None, description="The Hugging Face Hub commit the workers loaded MODEL at "
                                       "(MODEL_REVISION, a branch, tag or commit, resolved); null for a directory MODEL.")
    model_type: ModelTypeOut
    labels: list[str] = Field(description="The model's labels, in id order.", examples=[["NEGATIVE", "POSITIVE"]])
    problem_type: str | None = Field(description="The model config's problem_type, if it says.")
    default_function: str = Field(description="function_to_apply when a request names none.", examples=["softmax"])
    segment_ids: bool = Field(description="The model takes token type ids (tells a pair's two texts apart).")
    max_input_length: int = Field(description="Most tokens of a text (pair), special tokens included; longer ones "
                                  "are cut (truncate=false: refused).", examples=[512])
    auto_truncate: bool = Field(True, description="Texts over max_input_length are cut unless a request says not.")
    max_client_batch_size: int = Field(description="MAX_BATCH_TEXTS: most texts in one request.")
    max_concurrent_requests: int = Field(description="MAX_IN_FLIGHT: requests one API process waits on at once.")
    max_batch_requests: int | None = Field(description="MAX_BATCH_SIZE of the workers: texts per window.")
    max_batch_tokens: int | None = Field(description="The workers' padded-token budget per forward pass.")
    workers: int = Field(description="Live workers.")
    backends: dict[str, int] = Field(description="Live workers per backend they run.")
    models: list[ServedModelOut] = Field(description="Every distinct model the live workers serve: one, unless a "
                                         "rollout is under way (then model_id etc. describe the first).")
    auto_choice: AutoChoiceOut | None = Field(None, description="BACKEND=auto's decision, as the first live worker "
                                              "that made one measured it (docs/backends.md); null for a named BACKEND.")
    served_model_name: str = Field(description="The model's name (SERVED_MODEL_NAME of its workers): in the /v2 "
                                   "routes, in our JSON's `model` field, in /info's `?model=`.")
    served_version: int = Field(1, description="The version described (MODEL_VERSION of its workers): where the "
                                "name's unpinned requests go now.")
    response_cache_ttl_s: int = Field(description="CACHE_TTL_S (0: no response cache).")
    version: str = Field(API_VERSION, description="The HTTP API's version.")
    protocol_version: int = Field(PROTOCOL_VERSION, description="The API-worker wire protocol's version.")


def info_of(view: ModelView, settings: ApiSettings, name: str, version: int) -> InfoOut | None:
    """The /info body of version ``version`` of the model served as ``name``; None while no live worker has
    described its model."""
    if not view.cards:
        return None
    card: ModelCard = view.cards[0]
    return InfoOut(
        model_id=card.model, model_sha=card.fingerprint, model_revision=card.revision or None,
        model_type=ModelTypeOut(classifier=ClassifierOut(
            id2label={str(i): label for i, label in enumerate(card.labels)},
            label2id={label: i for i, label in enumerate(card.labels)})),
        labels=list(card.labels), problem_type=card.problem_type, default_function=card.default_function,
        segment_ids=card.segment_ids, max_input_length=card.max_tokens,
        max_client_batch_size=settings.max_batch_texts, max_concurrent_requests=settings.max_in_flight,
        max_batch_requests=view.max_batch_size, max_batch_tokens=view.max_batch_tokens, workers=view.workers,
        backends=view.backends,
        models=[ServedModelOut(model_id=c.model, model_sha=c.fingerprint, model_revision=c.revision or None,
                               backend=c.backend, labels=list(c.labels)) for c in view.cards],
        auto_choice=_auto_choice(view.backend_choice),
        served_model_name=name, served_version=version, response_cache_ttl_s=settings.cache_ttl_s,
    )


def _auto_choice(raw: str) -> AutoChoiceOut | None:
    if not raw:
        return None
    try:
        return AutoChoiceOut.model_validate_json(raw)
    except ValueError:  # a worker of another version: its table is left out, the rest of /info stands
        return None


# Request models whose top_k the OpenAPI document bounds by the model's labels, where they are in it.
TOP_K_SCHEMAS = ("PredictRequest", "PredictBatchRequest", "InferenceParameters", "RequestParameters")


def with_top_k_limit(document: dict[str, Any], num_labels: int | None) -> dict[str, Any]:
    """``document`` (FastAPI's OpenAPI, not modified) with top_k's maximum set to ``num_labels``, where known: the
    limit the API enforces (422 beyond it), so that the document states it."""
    if num_labels is None:
        return document
    patched = copy.deepcopy(document)
    schemas = patched.get("components", {}).get("schemas", {})
    for name in TOP_K_SCHEMAS:
        top_k = schemas.get(name, {}).get("properties", {}).get("top_k")
        for branch in (top_k or {}).get("anyOf", []):
            if branch.get("type") == "integer":
                branch["maximum"] = num_labels
    return patched
