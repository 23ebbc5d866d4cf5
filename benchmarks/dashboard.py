"""``python -m benchmarks.dashboard``: the Grafana dashboard's panels rendered from real data, to a PNG.

Redis, the API and workers as real processes, scraped by a real Prometheus (Debian's ``prometheus``) every 2 s,
under a scripted run of wrk load: light, heavy, heavy with a second worker, no worker at all (refusals), a worker
back. Then every panel of deploy/monitoring/grafana/dashboards/sentimentalyzer.json is queried over the run
through Prometheus's range API, with the panel's own PromQL, and drawn in the dashboard's layout. Grafana itself
is not installable here; its panels are these queries, so the picture shows what the dashboard would.

    python -m benchmarks.dashboard                   # ~3 min: bench model, BACKEND=torch -> docs/dashboard.png
    python -m benchmarks.dashboard --quick --out X   # smoke run (the suite runs it): simulated worker, 1 s phases,
                                                     # scraped every second
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.__main__ import ensure_model
from benchmarks.environment import cpu_model, git_commit
from benchmarks.wrk import run_wrk, wrk_binary
from harness.corpus import load_sentences
from harness.dashboard import concrete, dashboard
from harness.processes import ROOT, RedisServer, wait_until
from harness.prometheus import PrometheusServer
from harness.service import Service, start_service

SCRAPE_S = 2
RATE_WINDOW = "10s"  # what Grafana's $__rate_interval is at a 2 s scrape interval (4 scrapes, rounded up)
# The quick run's: its phases are short, so Prometheus scrapes every second to have points in each.
QUICK_SCRAPE_S = 1
QUICK_RATE_WINDOW = "5s"


@dataclass(frozen=True)
class Phase:
    name: str
    connections: int
    seconds: int
    before: Callable[[Service], object] = lambda svc: None  # what changes as the phase starts


def phases(seconds: int) -> list[Phase]:
    def stop_workers(svc: Service) -> None:
        svc.stop_workers()

    return [Phase("8 clients", 8, seconds),
            Phase("64 clients", 64, seconds),
            Phase("64 clients, 2 workers", 64, seconds, lambda svc: svc.start_worker()),
            Phase("no worker", 16, seconds, stop_workers),
            Phase("a worker back", 16, seconds, lambda svc: svc.start_worker())]


def drive(svc: Service, texts: list[str], plan: list[Phase]) -> list[tuple[str, float, float]]:
    """Run the plan: each phase's change, then wrk for its length. Returns (phase, start, end) in Unix time."""
    spans = []
    for phase in plan:
        phase.before(svc)
        started = time.time()
        result = run_wrk(svc.url + "/predict", texts, phase.connections, phase.seconds, timeout_s=15)
        spans.append((phase.name, started, time.time()))
        print(f"  {phase.name}: {result.rps:.1f} req/s, p50 {result.p50_ms:.0f} ms, non-2xx/errors {result.errors}",
              flush=True)
    return spans


def legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template) or template


def gapped(points: list[tuple[float, float]], step: float = SCRAPE_S) -> list[tuple[float, float]]:
    """A break (NaN) wherever Prometheus had no value for a step, so that the line is not drawn across it."""
    out: list[tuple[float, float]] = []
    for point in points:
        if out and point[0] - out[-1][0] > step * 1.5:
            out.append((out[-1][0] + step, float("nan")))
        out.append(point)
    return out


def render(prometheus: PrometheusServer, spans: list[tuple[str, float, float]], title: str,
           out: Path, *, scrape_s: int = SCRAPE_S, rate_window: str = RATE_WINDOW) -> dict[str, int]:
    """Draw every panel to ``out``; returns how many series each panel drew."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    board = dashboard()
    drawn_by_panel: dict[str, int] = {}
    panels = board["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels) // 8
    fig, axes = plt.subplots(rows, 2, figsize=(16, 3.1 * rows), squeeze=False)
    start, end = spans[0][1], spans[-1][2]
    colors = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9"]
    for panel in panels:
        ax = axes[panel["gridPos"]["y"] // 8][panel["gridPos"]["x"] // 12]
        drawn = 0
        for target in panel["targets"]:
            expr = concrete(target["expr"], rate_window)  # the dashboard's `model` variable at All
            for series in prometheus.query_range(expr, start, end, scrape_s):
                points = gapped([(float(t) - start, float(v)) for t, v in series["values"]
                                 if v not in ("NaN", "+Inf")], scrape_s)
                if points:
                    xs, ys = zip(*points)
                    ax.plot(xs, ys, color=colors[drawn % len(colors)], linewidth=1.4,
                            label=legend(target.get("legendFormat", ""), series["metric"]))
                    drawn += 1
        for i, (name, s, e) in enumerate(spans):
            ax.axvspan(s - start, e - start, color="#888888", alpha=0.08 if i % 2 else 0.0)
        drawn_by_panel[panel["title"]] = drawn
        ax.set_title(panel["title"], fontsize=10, loc="left")
        ax.set_xlim(0, end - start)
        ax.grid(alpha=0.3)
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        if unit in ("s", "reqps", "percentunit"):
            ax.set_ylabel({"s": "seconds", "reqps": "requests/s", "percentunit": "fraction"}[unit], fontsize=8)
        ax.tick_params(labelsize=8)
        if drawn:
            ax.legend(fontsize=7, loc="upper left")
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", color="#888888")
    for ax in axes[-1]:
        ax.set_xlabel("seconds into the run", fontsize=8)
    top = axes[0]
    for ax in top:
        for name, s, e in spans:
            ax.text((s + e) / 2 - start, 1.13, name, transform=ax.get_xaxis_transform(), ha="center", fontsize=7,
                    color="#555555")
    fig.suptitle(title, fontsize=11, y=0.998)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return drawn_by_panel


def scraped_after(prometheus: PrometheusServer, when: float) -> bool:
    """Whether Prometheus has scraped the service at or after ``when`` (Unix time): then every scrape before it is
    in its database (one target's scrapes are taken in turn)."""
    return prometheus.value('timestamp(up{job="sentimentalyzer"})') >= when


def run(args: argparse.Namespace) -> Path:
    wrk_binary()  # fail before starting anything
    model, note = (("/no/model/needed", "none (BACKEND=simulated)") if args.backend == "simulated"
                   else ensure_model(args.model))
    texts = load_sentences()[0][:500]
    env = dict(MODEL=model, BACKEND=args.backend, LOG_LEVEL="WARNING", TORCH_THREADS="1", SIMULATED_BATCH_MS="40",
               SIMULATED_TEXT_MS="4")
    with tempfile.TemporaryDirectory(prefix="dashboard-") as tmp:
        redis = RedisServer(Path(tmp))
        svc = start_service(redis.url, Path(tmp), workers=1, env=env, ready_timeout=300)
        prometheus = None
        stopping = None
        try:
            prometheus = PrometheusServer(f"{svc.url}/metrics", Path(tmp) / "prometheus",
                                          scrape_interval=f"{args.scrape_s}s")
            spans = drive(svc, texts, phases(args.phase_s))
            if args.quick:  # the last phase's final scrape, polled; then the service stops while the panels are drawn
                wait_until(lambda: scraped_after(prometheus, spans[-1][2]), 10 * args.scrape_s,
                           "a scrape after the run", interval=0.1)
                stopping = threading.Thread(target=svc.stop, name="stop the service")
                stopping.start()
            else:
                time.sleep(args.scrape_s * 1.5)  # the last phase's final scrape
            title = (f"Sentimentalyzer dashboard, rendered from Prometheus ({cpu_model()}, commit {git_commit()}, "
                     f"{dt.datetime.now().isoformat(timespec='minutes')})\nmodel {Path(model).name}: {note}; "
                     f"BACKEND={args.backend}; phases of wrk load as shaded")
            drawn = render(prometheus, spans, title, args.out, scrape_s=args.scrape_s, rate_window=args.rate_window)
        finally:
            if prometheus is not None:
                prometheus.stop()
            if stopping is not None:
                stopping.join()
            else:
                svc.stop()
            redis.stop()
    # What was drawn, beside the picture: the series per panel and the phases.
    args.out.with_suffix(".json").write_text(json.dumps(
        {"series_per_panel": drawn, "phases": [{"name": n, "seconds": round(e - s, 1)} for n, s, e in spans],
         "backend": args.backend, "model": model, "cpu": cpu_model(), "commit": git_commit()}, indent=2) + "\n")
    return args.out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model directory (default: build/reuse models/bench)")
    parser.add_argument("--backend", default="torch", help="the workers' BACKEND (default torch: no measuring)")
    parser.add_argument("--phase-s", type=int, default=30, help="seconds per load phase")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: simulated worker, 1 s phases, scraped every second")
    args = parser.parse_args(argv)
    args.scrape_s, args.rate_window = SCRAPE_S, RATE_WINDOW
    if args.quick:
        args.backend, args.phase_s = "simulated", 1
        args.scrape_s, args.rate_window = QUICK_SCRAPE_S, QUICK_RATE_WINDOW
    print(f"dashboard rendered to {run(args)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
