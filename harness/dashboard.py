"""The Grafana dashboard in the repo (deploy/monitoring): its panels and their queries, for the test that checks
them against the exported metrics and for rendering it from Prometheus (benchmarks/dashboard.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from harness.processes import ROOT

DASHBOARD_PATH = ROOT / "deploy" / "monitoring" / "grafana" / "dashboards" / "sentimentalyzer.json"
# Grafana's rate window in the panels' PromQL; outside Grafana a concrete window takes its place.
RATE_INTERVAL = "$__rate_interval"
# The dashboard's `model` variable (a served model name, multi-value, All = every model): every panel filters on
# it with ``model=~"$model"``; outside Grafana a regex of the names takes its place (ALL_MODELS: every one).
MODEL_VARIABLE = "$model"
ALL_MODELS = ".*"


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    expr: str


def dashboard() -> dict:
    return json.loads(DASHBOARD_PATH.read_text())


def panel_queries(board: dict | None = None) -> list[PanelQuery]:
    board = board or dashboard()
    return [PanelQuery(panel["title"], target["expr"]) for panel in board["panels"] for target in panel["targets"]]


def concrete(expr: str, rate_window: str, models: Iterable[str] | None = None) -> str:
    """A panel's PromQL as Grafana would send it: ``$__rate_interval`` as ``rate_window`` and ``$model`` as the
    regex of ``models`` as Grafana formats a multi-value selection (None: All, every model)."""
    regex = ALL_MODELS if models is None else "(" + "|".join(map(_regex_literal, models)) + ")"
    return expr.replace(RATE_INTERVAL, rate_window).replace(MODEL_VARIABLE, regex)


def _regex_literal(value: str) -> str:
    """``value`` matched literally by a regex inside a PromQL double-quoted string (as Grafana escapes a value)."""
    return re.sub(r"[$^*{}\[\]'+?.()|\\]", lambda found: "\\\\" + found[0], value)
