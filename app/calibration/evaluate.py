"""Evaluate a router on labelled data, beside the random and prompt-length baselines.

Per source with weak/strong outcomes: APGR, CPT(50%), CPT(80%) (see
:mod:`app.calibration.metrics`), the lift over prompt length with a paired
bootstrap interval, the tier split and quality at the artifact's
threshold, and the cost relative to sending everything to tier 2. Writes one
PNG of quality vs. share of tier-2 calls per source.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.calibration.data import Dataset
from app.calibration.metrics import (
    RANDOM_SEEDS,
    Curve,
    apgr,
    cost_ratio,
    cpt,
    curve,
    format_lift,
    length_scores,
    lift_interval,
    random_scores,
    routed_performance,
)
from app.routing.router import Router


def _row(c: Curve) -> dict[str, float]:
    return {"apgr": apgr(c), "cpt50": cpt(c, 0.5), "cpt80": cpt(c, 0.8)}


def evaluate(
    router: Router,
    ds: Dataset,
    cost_tier1: float = 1.0,
    cost_tier2: float = 10.0,
    n_bins: int = 10,
    plot_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, dict]:
    """Report per source: metrics of the router, its centroid signal, and the baselines."""
    rows = [e for e in ds.examples if e.has_outcomes]
    if not rows:
        raise ValueError("evaluation needs prompts with weak/strong outcomes")
    texts = [e.text for e in rows]
    sig = router.score_texts(texts, progress=progress)
    length = length_scores(texts)
    src = np.array([e.source for e in rows])
    weak = np.array([e.weak for e in rows])
    strong = np.array([e.strong for e in rows])
    report: dict[str, dict] = {}
    for s in sorted(set(src)):
        m = src == s
        w, g = weak[m], strong[m]
        if w.mean() == g.mean():
            report[s] = {"n": int(m.sum()), "skipped": "weak and strong perform the same: no gap to recover"}
            continue
        curves = {
            "router": curve(sig.score[m], w, g, n_bins),
            "centroid signal": curve(sig.centroid[m], w, g, n_bins),
            "prompt length": curve(length[m], w, g, n_bins),
        }
        rand = [curve(random_scores(int(m.sum()), seed), w, g, n_bins) for seed in RANDOM_SEEDS]
        share, quality = routed_performance(sig.score[m], w, g, router.threshold)
        report[s] = {
            "n": int(m.sum()),
            "weak": float(w.mean()),
            "strong": float(g.mean()),
            **{name: _row(c) for name, c in curves.items()},
            "random (mean of 20)": {k: float(np.mean([_row(c)[k] for c in rand])) for k in ("apgr", "cpt50", "cpt80")},
            "lift over length": lift_interval(sig.score[m], length[m], w, g, n_bins=n_bins),
            "at_threshold": {
                "threshold": router.threshold,
                "tier2_share": share,
                "quality": quality,
                "pgr": (quality - w.mean()) / (g.mean() - w.mean()),
                "cost_vs_all_tier2": cost_ratio(share, cost_tier1, cost_tier2),
            },
        }
        if plot_dir is not None:
            report[s]["plot"] = str(plot(s, curves, rand[0], Path(plot_dir), (share, quality)))
    return report


def plot(source: str, curves: dict[str, Curve], rand: Curve, out_dir: Path, point: tuple[float, float]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, c in {**curves, "random": rand}.items():
        ax.plot(100 * c.strong_share, c.performance, marker=".", label=f"{name} (APGR {apgr(c):.3f})")
    c = curves["router"]
    ax.axhline(c.weak, color="grey", ls="--", lw=1, label="tier 1 only")
    ax.axhline(c.strong, color="red", ls="--", lw=1, label="tier 2 only")
    ax.plot([100 * point[0]], [point[1]], "k*", ms=12, label="artifact threshold")
    ax.set_xlabel("tier-2 calls (%)")
    ax.set_ylabel("quality (mean outcome)")
    ax.set_title(f"Quality vs. tier-2 calls — {source}")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = out_dir / f"{source}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def format_report(report: dict[str, dict]) -> str:
    lines = []
    for s, r in report.items():
        lines.append(f"== {s} (n={r['n']})")
        if "skipped" in r:
            lines.append(f"   skipped: {r['skipped']}")
            continue
        lines.append(f"   tier 1 alone {r['weak']:.3f}   tier 2 alone {r['strong']:.3f}")
        lines.append(f"   {'router':<22}{'APGR':>8}{'CPT(50%)':>10}{'CPT(80%)':>10}")
        for name in ("router", "centroid signal", "prompt length", "random (mean of 20)"):
            m = r[name]
            lines.append(f"   {name:<22}{m['apgr']:>8.3f}{100 * m['cpt50']:>9.1f}%{100 * m['cpt80']:>9.1f}%")
        lift = r["lift over length"]
        lines.append(f"   lift over prompt length: {format_lift(lift)} (90% bootstrap interval)")
        t = r["at_threshold"]
        lines.append(
            f"   at threshold {t['threshold']:.4f}: tier 2 {100 * t['tier2_share']:.1f}% / tier 1 "
            f"{100 * (1 - t['tier2_share']):.1f}%, quality {t['quality']:.3f} (PGR {t['pgr']:.2f}), "
            f"cost {100 * t['cost_vs_all_tier2']:.1f}% of all-tier-2"
        )
        if "plot" in r:
            lines.append(f"   plot: {r['plot']}")
    return "\n".join(lines)
