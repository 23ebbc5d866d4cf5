"""Benchmark report: JSON (everything), Markdown (the tables) and PNG charts."""

from __future__ import annotations

import json
from pathlib import Path

from common.counters import LEAF_PHASES, PHASE_HELP, TOP_PHASES

SYSTEM_LABELS = {"naive": "naive (1 pass per request)", "batched": "batched service (API + Redis + worker)",
                 "litserve": "LitServe (its batching, same model code)"}


def _fmt(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def ratios(results: dict) -> dict:
    """Per user level: batched/naive RPS, naive/batched p50 and p99."""
    out = {}
    naive, batched = results["closed_loop"].get("naive", {}), results["closed_loop"].get("batched", {})
    for users in batched:
        if users not in naive:
            continue
        n, b = naive[users]["median"], batched[users]["median"]
        out[users] = {"rps_batched_over_naive": b["rps"] / n["rps"], "p50_naive_over_batched": n["p50_ms"] / b["p50_ms"],
                      "p99_naive_over_batched": n["p99_ms"] / b["p99_ms"]}
        peer = results["closed_loop"].get("litserve", {}).get(users)
        if peer:
            p = peer["median"]
            out[users].update(rps_batched_over_litserve=b["rps"] / p["rps"],
                              p99_litserve_over_batched=p["p99_ms"] / b["p99_ms"])
    return out


def markdown(results: dict) -> str:
    env, ceiling = results["environment"], results["ceiling"]
    lines = [f"# Benchmark `{results['name']}`", "",
             f"Model `{env['model']}` ({env['model_note']}); torch {env['torch']} ({env['torch_threads']} threads "
             f"per model process); backend: batched `{env.get('backend_batched', 'torch')}`, naive "
             f"`{env.get('backend_naive', 'torch')}` (ceiling: the batched one's); {env['cpu_model']}, {env['cores']} cores; {env['date']}; commit `{env['commit']}`. "
             f"Texts: {env['texts']} in random order. Locust closed loop, think time {env['think_time']}, "
             f"{env['warmup_s']:.0f} s warm-up excluded, {env['measure_s']:.0f} s measured, {env['repeats']} repeats per "
             f"level (median; RPS and p99 ranges in brackets). Latencies are exact (raw per-request timings, not "
             f"Locust's rounded ones).", "",
             "## In-process ceiling (no HTTP, no Redis)", "",
             "Measured before and after the load runs; the figure is the median of all runs.", "",
             "| batch policy | sentences/s | before | after | mean batch |", "|---|---|---|---|---|"]
    for name, r in ceiling["policies"].items():
        marker = " (the worker's policy)" if name == ceiling["worker_policy"] else ""
        lines.append(f"| `{name}`{marker} | {_fmt(r['sentences_per_s'], 1)} | {_fmt(r['before'], 1)} | "
                     f"{_fmt(r['after'], 1)} | {_fmt(r['mean_batch'], 1)} |")
    lines += ["", "## Closed loop (Locust), side by side", "",
              "| users | system | RPS | p50 ms | p95 ms | p99 ms | max ms | failures | load gen CPU |",
              "|---|---|---|---|---|---|---|---|---|"]
    for system, levels in results["closed_loop"].items():
        for users, level in levels.items():
            m = level["median"]
            lines.append(
                f"| {users} | {system} | {_fmt(m['rps'], 1)} [{_fmt(m['rps_range'][0], 1)}–{_fmt(m['rps_range'][1], 1)}] | "
                f"{_fmt(m['p50_ms'])} | {_fmt(m['p95_ms'])} | {_fmt(m['p99_ms'])} [{_fmt(m['p99_range'][0])}–"
                f"{_fmt(m['p99_range'][1])}] | {_fmt(m['max_ms'])} | {m['failures']} | {_fmt(m['generator_cpu_pct'])} % |")
    peer = any("rps_batched_over_litserve" in r for r in results["ratios"].values())
    lines += ["", "## Ratios (same run)", "", "| users | batched/naive RPS | naive/batched p50 | naive/batched p99 |"
              + (" batched/LitServe RPS | LitServe/batched p99 |" if peer else ""),
              "|---|---|---|---|" + ("---|---|" if peer else "")]
    for users, r in results["ratios"].items():
        row = (f"| {users} | {r['rps_batched_over_naive']:.2f}× | {r['p50_naive_over_batched']:.2f}× | "
               f"{r['p99_naive_over_batched']:.2f}× |")
        if "rps_batched_over_litserve" in r:
            row += f" {r['rps_batched_over_litserve']:.2f}× | {r['p99_litserve_over_batched']:.2f}× |"
        lines.append(row)
    if results["environment"].get("litserve"):
        ls = results["environment"]["litserve"]
        lines.append(f"\nLitServe {ls['version']}: max_batch_size={ls['max_batch_size']}, "
                     f"batch_timeout={ls['batch_timeout_s']:g} s, 1 inference process ({ls['note']}).")
    for key, value in results.get("ceiling_ratios", {}).items():
        lines.append(f"\n{key}: **{value:.2f}**")
    if results.get("open_loop"):
        lines += ["", f"## Open loop: {results['open_loop_rate']:.1f} requests/s fixed arrival rate, latency from the "
                  "intended send time", "", "| system | answered/s | p50 ms | p95 ms | p99 ms | max ms | failures |",
                  "|---|---|---|---|---|---|---|"]
        for system, r in results["open_loop"].items():
            lines.append(f"| {system} | {_fmt(r['rps'], 1)} | {_fmt(r['p50_ms'])} | {_fmt(r['p95_ms'])} | "
                         f"{_fmt(r['p99_ms'])} | {_fmt(r['max_ms'])} | {r['failures']} |")
    lines += ["", "## CPU split (% of one core, median over repeats, highest user level)", "",
              "| system | " + " | ".join(["process", "CPU"]) + " |", "|---|---|---|"]
    for system, levels in results["closed_loop"].items():
        top = levels[max(levels, key=int)]
        for role, pct in top["cpu_pct"].items():
            lines.append(f"| {system} | {role} | {_fmt(pct)} % |")
        lines.append(f"| {system} | load generator (locust) | {_fmt(top['median']['generator_cpu_pct'])} % |")
    profile = results.get("worker_profile")
    if profile:
        total = sum(profile[k] for k in TOP_PHASES) or 1.0
        lines += ["", "## Where the worker's time goes (highest user level, all repeats)", "",
                  "| phase | seconds | share |", "|---|---|---|"]
        for key in LEAF_PHASES:
            lines.append(f"| {PHASE_HELP[key]} | {profile[key]:.2f} | {100 * profile[key] / total:.1f} % |")
    if results.get("batch_sizes"):
        sizes = {int(k): v for k, v in results["batch_sizes"].items()}  # JSON keys are strings
        texts = sum(k * v for k, v in sizes.items())
        lines += ["", f"Worker batch sizes at the highest level: mean {texts / max(1, sum(sizes.values())):.1f} texts "
                  f"per forward pass over {sum(sizes.values())} batches."]
    lines += ["", "Charts: " + ", ".join(f"`{Path(c).name}`" for c in results.get("charts", []))]
    return "\n".join(lines) + "\n"


def write_charts(results: dict, out_dir: Path, name: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts = []
    colors = {"naive": "tab:red", "batched": "tab:blue", "litserve": "tab:green"}
    closed = results["closed_loop"]

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for system, levels in closed.items():
        users = [int(u) for u in levels]
        med = [levels[u]["median"]["rps"] for u in levels]
        low = [m - levels[u]["median"]["rps_range"][0] for u, m in zip(levels, med)]
        high = [levels[u]["median"]["rps_range"][1] - m for u, m in zip(levels, med)]
        ax.errorbar(users, med, yerr=[low, high], marker="o", capsize=4, color=colors.get(system),
                    label=SYSTEM_LABELS.get(system, system))
    for policy, style in ((results["ceiling"]["worker_policy"], "--"), ("batch_1", ":")):
        rate = results["ceiling"]["policies"][policy]["sentences_per_s"]
        ax.axhline(rate, linestyle=style, color="gray", label=f"in-process ceiling, {policy} ({rate:.0f}/s)")
    ax.set_xlabel("concurrent users (Locust)")
    ax.set_ylabel("requests/s (median, min–max)")
    ax.set_ylim(bottom=0)
    ax.set_title("Throughput vs users")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    charts.append(_save(fig, out_dir / f"{name}_throughput.png"))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for system, levels in closed.items():
        users = [int(u) for u in levels]
        for key, style in (("p50_ms", "-"), ("p95_ms", "--"), ("p99_ms", ":")):
            ax.plot(users, [levels[u]["median"][key] for u in levels], style, marker="o", color=colors.get(system),
                    label=f"{system} {key.removesuffix('_ms')}")
    ax.set_xlabel("concurrent users (Locust)")
    ax.set_ylabel("latency, ms (median over repeats)")
    ax.set_yscale("log")
    ax.set_title("Latency percentiles vs users")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3, which="both")
    charts.append(_save(fig, out_dir / f"{name}_latency.png"))

    sizes = {int(k): v for k, v in (results.get("batch_sizes") or {}).items()}
    if sizes:
        fig, ax = plt.subplots(figsize=(7, 4))
        xs = sorted(sizes)
        texts = [x * sizes[x] for x in xs]
        ax.bar(xs, texts, color="tab:blue")
        ax.set_xlabel("batch size (texts per forward pass)")
        ax.set_ylabel("texts served in batches of that size")
        ax.set_title("Batch sizes seen by the worker at the highest user level")
        ax.grid(alpha=0.3, axis="y")
        charts.append(_save(fig, out_dir / f"{name}_batch_sizes.png"))
    return charts


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return str(path)


def save_report(base: Path, results: dict, text: str) -> None:
    """A benchmark's results: ``<base>.json`` (everything) and ``<base>.md`` (the tables), which is also printed."""
    base.parent.mkdir(parents=True, exist_ok=True)
    base.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    base.with_suffix(".md").write_text(text)
    print(text)
