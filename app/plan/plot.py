"""One PNG: monthly cost vs tier-2 share, and the objective's percentile of TTFT and e2e latency vs load."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _tier_label(d: dict) -> str:
    """Nodes for a self-hosted tier, $ per 1M tokens for a remote one."""
    if d.get("remote"):
        return f"{d['model']}\n(\\${d['input_usd_per_1m']:g} in, \\${d['output_usd_per_1m']:g} out per 1M tokens)"
    return f"{d['nodes']} x {d['node']}"


def breakdown(ax, plan: dict) -> None:
    """Monthly cost per topology, stacked by tier, each part labelled with its nodes or its price per token."""
    tops = [("routed", plan["routed"])]
    if plan.get("cascade"):
        tops.append((plan["cascade"]["mode"], plan["cascade"]))
    tops.append(("all tier 2", plan["all_large"]))
    router = plan["routed"]["router"]["monthly_usd"]
    top_usd = 0.0
    for x, (name, top) in enumerate(tops):
        bottom, lines = 0.0, []
        parts = [(f"tier{t}", top.get(f"tier{t}")) for t in (1, 2)] + ([("router", None)] if name != "all tier 2" else [])
        for key, d in parts:
            usd = router if key == "router" else (d or {}).get("monthly_usd") or 0.0
            if usd <= 0:
                continue
            color = {"tier1": "C0", "tier2": "C3", "router": "C7"}[key]
            ax.bar(x, usd / 1e3, bottom=bottom / 1e3, color=color, alpha=0.75, edgecolor="white")
            what = "router" if key == "router" else f"tier {key[-1]}: {_tier_label(d)}"
            head, _, rest = what.partition("\n")
            lines.append(f"{head}: \\${usd / 1e3:,.0f}k" + (f"\n{rest}" if rest else ""))
            bottom += usd
        ax.text(x, bottom / 1e3, "\n".join(reversed(lines)), ha="center", va="bottom", fontsize=6.5)  # top part first
        top_usd = max(top_usd, bottom)
    ax.set_ylim(0, 1.5 * top_usd / 1e3)
    ax.set_xticks(range(len(tops)), [n for n, _ in tops])
    ax.set_ylabel("$ thousand / month")
    ax.set_title("monthly cost by tier (nodes or $ per token)")


def plot(curves: dict, path: str | Path, title: str = "", plan: dict | None = None) -> Path:
    p = curves["percentile"]
    fig, axes = plt.subplots(1, 4 if plan else 3, figsize=(21 if plan else 16, 4.6))
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
    for ax, metric in zip(axes[1:3], ("ttft", "e2e")):
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
    if plan:
        breakdown(axes[3], plan)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
