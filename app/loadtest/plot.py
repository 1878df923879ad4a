"""One PNG: end-to-end latency percentiles vs. load, throughput vs. load, and the tier split, per arm."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

STYLES = {"p50": "-", "p95": "--", "p99": ":"}


def plot_results(results: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    levels = results["levels"]
    loads = [lv["load"] for lv in levels]
    arms = list(results["arms"])
    xlabel = "offered load (requests/s, Poisson)" if results["loop"] == "open" else "concurrency (requests in flight)"
    fig, (lat, thr, split) = plt.subplots(1, 3, figsize=(16, 4.8))
    for j, arm in enumerate(arms):
        color = f"C{j}"
        for p, ls in STYLES.items():
            ys = [lv["arms"][arm]["overall"]["e2e_ms"][p] for lv in levels]
            lat.plot(loads, [np.nan if y is None else y for y in ys], ls, marker="o", color=color, label=f"{arm} {p}")
        thr.plot(loads, [lv["arms"][arm]["overall"]["throughput_rps"] for lv in levels], marker="o", color=color, label=arm)
    lat.set(xlabel=xlabel, ylabel="end-to-end latency (ms)", title="latency percentiles vs. load")
    lat.legend(fontsize=7)
    thr.set(xlabel=xlabel, ylabel="completed requests/s", title="throughput vs. load")
    thr.legend(fontsize=8)
    groups = sorted({g for lv in levels for a in arms for g in lv["arms"][a]["tier_split"]})
    width = 0.8 / max(len(arms), 1)
    x = np.arange(len(loads))
    for j, arm in enumerate(arms):
        bottom = np.zeros(len(loads))
        for k, g in enumerate(groups):
            share = np.array([lv["arms"][arm]["tier_split"].get(g, 0.0) for lv in levels]) * 100
            split.bar(x + j * width, share, width, bottom=bottom, color=f"C{k + 2}", edgecolor="black" if j else "white",
                      label=g if j == 0 else None)  # fmt: skip
            bottom += share
    split.set_xticks(x + width * (len(arms) - 1) / 2, [f"{load:g}" for load in loads])
    split.set(xlabel=xlabel + "; bars: " + ", ".join(arms), ylabel="% of completed requests", title="tier split", ylim=(0, 100))
    split.legend(fontsize=8)
    fig.suptitle(f"tierroute loadtest: {results['url']} ({'streaming' if results['stream'] else 'not streaming'}, "
                 f"max_tokens {results['max_tokens']})")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
