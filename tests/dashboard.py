"""A check of the metric names and labels the Grafana dashboard's queries use against what the API really exports
(tests/unit/test_dashboard.py statically, tests/e2e/test_prometheus.py through Prometheus)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

SELECTOR = re.compile(r"\b(sentimentalyzer_[a-z_]+)\b(\{[^}]*\})?")
MATCHER = re.compile(r"([a-zA-Z_]+)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def exported(samples: Iterable[tuple[str, Iterable[str]]]) -> dict[str, set[str]]:
    """Sample name -> its label names, from (name, label names) pairs of a real exposition."""
    found: dict[str, set[str]] = {}
    for name, labels in samples:
        found.setdefault(name, set()).update(labels)
    return found


def problems(expr: str, names: dict[str, set[str]]) -> Iterator[str]:
    """What in ``expr`` does not exist in ``names`` (sample name -> label names): metrics, the labels its
    selectors match on, and the labels it groups by."""
    used_labels: set[str] = set()
    metrics = SELECTOR.findall(expr)
    if not metrics:
        yield f"names no sentimentalyzer metric: {expr}"
    for metric, selector in metrics:
        if metric not in names:
            yield f"{metric} is not exported"
            continue
        used_labels |= names[metric]
        for label in MATCHER.findall(selector):
            if label not in names[metric]:
                yield f"{metric} has no label {label!r}"
    for group in GROUPING.findall(expr):
        for label in filter(None, (part.strip() for part in group.split(","))):
            if label not in used_labels:
                yield f"grouping by {label!r}, which none of its metrics has"
