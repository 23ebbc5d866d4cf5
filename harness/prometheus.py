"""A real Prometheus (Debian's ``prometheus`` package) scraping the service, and its HTTP query API: for the e2e
test of the metrics and for rendering the dashboard from real data (benchmarks/dashboard.py)."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import yaml

from harness.processes import Process, free_port, wait_until


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


class PrometheusServer:
    """Prometheus on a free loopback port, scraping ``metrics_url`` every ``scrape_interval``, its data in
    ``workdir``; ready (the target scraped once) when constructed."""

    def __init__(self, metrics_url: str, workdir: Path, *, scrape_interval: str = "1s") -> None:
        binary = prometheus_binary()
        if binary is None:
            raise RuntimeError("prometheus not found: install it (Debian/Ubuntu: apt-get install -y prometheus)")
        target = urlsplit(metrics_url)
        config = {"global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
                  "scrape_configs": [{"job_name": "sentimentalyzer", "metrics_path": target.path,
                                      "static_configs": [{"targets": [target.netloc]}]}]}
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = Process([binary, f"--config.file={workdir / 'prometheus.yml'}",
                                f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                               {}, workdir / "prometheus.log", name="prometheus")
        try:
            wait_until(self._scraped, 30, "Prometheus to scrape the service", interval=0.2)
        except TimeoutError:
            self.stop()
            raise AssertionError(f"Prometheus did not scrape {metrics_url}:\n{self.process.output()[-3000:]}") from None

    def _scraped(self) -> bool:
        if not self.process.alive():
            raise RuntimeError(f"prometheus exited:\n{self.process.output()[-3000:]}")
        try:
            return bool(self.query('up{job="sentimentalyzer"} == 1'))
        except httpx.HTTPError:
            return False

    def _get(self, path: str, **params: str | float) -> list[dict]:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=10)
        if response.status_code == 503:  # still starting: a plain-text "Service Unavailable", not the API's JSON
            raise httpx.HTTPStatusError("Prometheus is not ready", request=response.request, response=response)
        body = response.json()
        if body["status"] != "success":
            raise ValueError(f"Prometheus refused {params.get('query')!r}: {body.get('error')}")
        return body["data"]["result"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """An instant query's series (each ``{"metric": labels, "value": [time, "value"]}``), now or ``at`` (Unix
        time)."""
        return self._get("/api/v1/query", query=expr, **({"time": at} if at is not None else {}))

    def value(self, expr: str, at: float | None = None) -> float:
        """The one value of an instant query that returns one series."""
        result = self.query(expr, at)
        if len(result) != 1:
            raise ValueError(f"{expr!r} returned {len(result)} series, not 1: {result}")
        return float(result[0]["value"][1])

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        """A range query's series (each ``{"metric": labels, "values": [[time, "value"], ...]}``)."""
        return self._get("/api/v1/query_range", query=expr, start=start, end=end, step=step)

    def stop(self) -> int:
        return self.process.stop(10)
