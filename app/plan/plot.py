"""One PNG: monthly cost vs tier-2 share, and the objective's percentile of TTFT and e2e latency vs load."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot(curves: dict, path: str | Path, title: str = "") -> Path:
    p = curves["percentile"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    ax = axes[0]
    xs = [100 * c["tier2_share"] for c in curves["cost_vs_share"]]
    ax.plot(xs, [c["monthly_usd"] / 1e3 for c in curves["cost_vs_share"]], "o-", label="routed (tier 1 + tier 2 + router)")
    casc = curves.get("cascade")
    if casc:
        pts = [c for c in casc["cost_vs_share"]]
        ax.plot([100 * c["tier2_share"] for c in pts], [c["monthly_usd"] / 1e3 for c in pts], "s-", color="C2",
                label="cascade (tier 1 answers all it gets; x = escalated + direct)")  # fmt: skip
    ax.axhline(curves["all_large_monthly_usd"] / 1e3, color="C3", ls="--", label="all tier 2")
    ax.set_xlabel("share of requests tier 2 answers (%)")
    ax.set_ylabel("$ thousand / month (on-demand)")
    ax.set_title("monthly cost vs tier-2 share")
    ax.legend(fontsize=8)
    for ax, metric in zip(axes[1:], ("ttft", "e2e")):
        for key, color, label in (("routed", "C0", "routed"), ("all_large", "C3", "all tier 2")):
            pts = [(r["rps"], r[key][f"{metric}_p{p:g}"]) for r in curves["latency_vs_load"] if key in r]
            if pts:
                ax.plot(*zip(*pts), "o-", color=color, label=label)
        if casc:
            ax.plot([r["rps"] for r in casc["latency_vs_load"]], [r[f"{metric}_p{p:g}"] for r in casc["latency_vs_load"]], "s-", color="C2", label="cascade")
        ax.set_xlabel("load (req/s; nodes fixed at the plan)")
        ax.set_ylabel("seconds")
        ax.set_yscale("log")
        ax.set_title(f"p{p:g} {'time to first token' if metric == 'ttft' else 'request latency'} vs load")
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
