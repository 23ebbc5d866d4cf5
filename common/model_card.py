"""What a worker says about the model it serves, in its heartbeat hash (``redis-cli HGETALL
sentimentalyzer:worker:<id>``): the API's ``/info``, its Open Inference Protocol metadata, its ``top_k`` limit and
its response cache's keys all come from here, so the API never loads the model itself."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from common.options import FUNCTIONS, Options, refusal

# Beside the card in the heartbeat: BACKEND=auto's decision (JSON: engine.autotune.choice.summary), shown at /info.
# Empty where the backend was named, not measured.
BACKEND_CHOICE_FIELD = "backend_choice"


@dataclass(frozen=True, slots=True)
class ModelCard:
    model: str  # the MODEL setting: a hub id or a directory
    fingerprint: str  # sha256 of the model's weights, config and tokenizer files (its revision's content)
    labels: tuple[str, ...]  # id2label, in id order
    max_tokens: int  # longest input in tokens, special tokens included; longer ones are truncated or refused
    default_function: str  # what scores get when a client names no function_to_apply (common/options.py)
    backend: str  # the runtime it runs on (BACKEND=auto: the one chosen); approximate ones answer differently
    problem_type: str | None = None  # the model config's problem_type, if it says
    segment_ids: bool = False  # the model takes token type ids: a text pair is told apart as two segments
    revision: str = ""  # the hub commit its files are of (MODEL_REVISION resolved); empty for a directory MODEL
    # How the backend computes, as its runtime names it (float32, float16, bfloat16, int8, ...), and on what kind of
    # device (cpu, cuda): BACKEND=torch is fp32 on a CPU and fp16 on a GPU, whose answers differ. Empty: not said
    # (a simulated predictor, or a worker of an older version).
    precision: str = ""
    device_type: str = ""

    @property
    def answers(self) -> str:
        """Names what this worker answers: the same for two workers whose answers to the same text and options are
        the same (same files, token limit, backend, precision and kind of device). Replies carry it; the response
        cache is keyed by it, so a cluster mixing GPU (fp16) and CPU (fp32) workers keeps their answers apart."""
        named = f"{self.fingerprint}:{self.max_tokens}:{self.backend}:{self.precision}:{self.device_type}"
        return hashlib.sha256(named.encode()).hexdigest()[:32]

    def refusal(self, options: Options, tokens: int) -> str | None:
        """Why this model cannot answer a text of ``tokens`` tokens as ``options`` ask (None: it can)."""
        return refusal(options, tokens, max_tokens=self.max_tokens, num_labels=len(self.labels))

    def fields(self) -> dict[str, str]:
        """The heartbeat fields (strings, readable with redis-cli)."""
        return {"model": self.model, "model_fingerprint": self.fingerprint, "labels": json.dumps(list(self.labels)),
                "max_tokens": str(self.max_tokens), "default_function": self.default_function,
                "backend": self.backend, "problem_type": self.problem_type or "",
                "segment_ids": str(int(self.segment_ids)), "model_revision": self.revision,
                "precision": self.precision, "device_type": self.device_type}

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> ModelCard | None:
        """The card in a heartbeat hash; None if it has none or a broken one (a worker of another version)."""
        try:
            labels = json.loads(fields["labels"])
            card = cls(model=fields["model"], fingerprint=fields["model_fingerprint"],
                       labels=tuple(str(label) for label in labels), max_tokens=int(fields["max_tokens"]),
                       default_function=fields["default_function"], backend=fields["backend"],
                       problem_type=fields["problem_type"] or None,
                       segment_ids=fields["segment_ids"] == "1",
                       # absent from an older worker's heartbeat:
                       revision=fields.get("model_revision") or "", precision=fields.get("precision") or "",
                       device_type=fields.get("device_type") or "")
        except (KeyError, ValueError, TypeError):
            return None
        if not card.labels or card.default_function not in FUNCTIONS or not isinstance(labels, list):
            return None
        return card


FIELDS = tuple(ModelCard("", "", ("x",), 0, FUNCTIONS[0], "").fields())  # the heartbeat fields a card takes
