"""What an API process knows of the model its workers serve, from their heartbeats' model cards
(common/model_card.py): labels for ``top_k``'s limit, the fingerprint that keys the response cache, and what
``/info`` and the Open Inference Protocol's metadata describe. One per model version (api/models.py), refreshed in
the background about once a second (and by ``/readyz`` and ``/info``), so the request path only reads a field.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from api.cluster import ClusterView, backend_counts
from common.model_card import BACKEND_CHOICE_FIELD, ModelCard

log = logging.getLogger(__name__)

REFRESH_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class ModelView:
    cards: tuple[ModelCard, ...] = ()  # the distinct cards of the live workers: one, unless a rollout is under way
    workers: int = 0  # live workers
    backends: dict[str, int] = field(default_factory=dict)  # live workers per backend
    max_batch_size: int | None = None  # the workers' batching settings (the first worker's, if they differ)
    max_batch_tokens: int | None = None
    backend_choice: str = ""  # BACKEND=auto's decision (JSON) of the first live worker that made one

    @property
    def card(self) -> ModelCard | None:
        """The model, if every live worker serves the same one."""
        return self.cards[0] if len(self.cards) == 1 else None

    @property
    def answers(self) -> str | None:
        """What the live workers answer with (ModelCard.answers), if they all agree: the response cache's key."""
        names = {card.answers for card in self.cards}
        return names.pop() if len(names) == 1 else None

    @property
    def num_labels(self) -> int | None:
        """The fewest labels any live worker's model has (what every one of them can answer with top_k)."""
        return min((len(card.labels) for card in self.cards), default=None)


def view_of(described: list[dict[str, str]]) -> ModelView:
    """The view of the live workers' heartbeat fields (those without a readable card are counted, not described)."""
    cards: list[ModelCard] = []
    for fields in described:
        card = ModelCard.from_fields(fields)
        if card is not None and card not in cards:
            cards.append(card)
    batching = next(iter(described), {})
    return ModelView(cards=tuple(cards), workers=len(described), backends=backend_counts(described),
                     max_batch_size=_int(batching.get("max_batch_size")),
                     max_batch_tokens=_int(batching.get("max_batch_tokens")),
                     backend_choice=next((f[BACKEND_CHOICE_FIELD] for f in described if f.get(BACKEND_CHOICE_FIELD)),
                                         ""))


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class Catalog:
    def __init__(self, cluster: ClusterView) -> None:
        self._cluster = cluster
        self.view = ModelView()  # the latest; the last known one while Redis is away

    async def refresh(self) -> ModelView:
        """Read the live workers' cards now. Raises ServiceError (503) when Redis is away."""
        view = view_of(await self._cluster.described_workers())
        if len(view.cards) > 1 and view.cards != self.view.cards:
            log.warning("live workers serve %d different models or backends (a rollout?): %s", len(view.cards),
                        ", ".join(f"{c.model} ({c.backend} {c.precision or '?'} on {c.device_type or '?'}, "
                                  f"{c.fingerprint[:12]})" for c in view.cards))
        self.view = view
        return view
