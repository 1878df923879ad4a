"""``tierroute evaluate --cascade``: what a cascade buys, per source, as quality-vs-cost curves.

On rows that carry tier 1's answer, the verifier is fitted and scored by nested cross-validation (the
scores of a row come from a verifier that never saw it). Per source, one PNG draws quality against cost
(relative to sending everything to tier 2; tokens estimated from the texts, priced per tier) for:
the cascade with that verifier, the cascade with the answer's length as its verifier, routing before
generation by prompt length, and random routing -- cascades charge every request tier 1's tokens,
escalated ones tier 2's as well. The table beside it gives each curve's APGR (quality over the share of
requests reaching tier 2) and the cost at which each reaches half and 80% of the quality gap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.calibration.metrics import CostCurve, apgr, cost_curve, curve, random_scores
from app.calibration.prepared import cached_embedder
from app.calibration.verifier_build import designs, nested_report
from app.calibration.verifier_cli import load_answer_rows
from app.calibration.verifier_fit import candidates
from app.routing.text import estimate_tokens


def _cost_at(c: CostCurve, weak: float, strong: float, gap_share: float) -> float:
    """The lowest cost at which quality reaches ``weak + gap_share * (strong - weak)`` (nan if never)."""
    ok = c.quality >= weak + gap_share * (strong - weak) - 1e-12
    return float(c.cost[ok].min()) if ok.any() else float("nan")


def source_curves(rows, oof: np.ndarray, price1: float, price2: float) -> dict[str, tuple[np.ndarray, CostCurve, bool]]:
    """name -> (scores, cost curve, is a cascade) for one source's rows."""
    req = [estimate_tokens(r.answer.request) for r in rows]
    ans1 = [estimate_tokens(r.answer.answer) for r in rows]
    c1 = np.array([(a + b) * price1 for a, b in zip(req, ans1)])
    c2 = np.array([(a + 1.2 * b) * price2 for a, b in zip(req, ans1)])  # tier 2's answer: not in the rows; a little longer
    w = np.array([r.weak for r in rows])
    g = np.array([r.strong for r in rows])
    candidates_ = {
        "cascade: verifier (nested)": (oof, True),
        "cascade: answer length": (np.array(ans1, dtype=float), True),
        "route: prompt length": (np.array(req, dtype=float), False),
        "route: random": (random_scores(len(rows)), False),
    }
    return {n: (s, cost_curve(s, w, g, c1, c2, casc), casc) for n, (s, casc) in candidates_.items()}


def plot(source: str, curves: dict, weak: float, strong: float, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, (_, c, casc) in curves.items():
        ax.plot(c.cost, c.quality, "-" if casc else "--", marker=".", label=name)
    ax.axhline(weak, color="grey", lw=0.8, ls=":")
    ax.axhline(strong, color="black", lw=0.8, ls=":")
    ax.set(xlabel="cost relative to all tier 2 (tier-1 tokens of escalated requests charged)", ylabel="quality (mean outcome)", title=f"{source}: cascade vs routing before generation")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_cascade(args) -> int:
    rows, _ = load_answer_rows(args.data)
    embed = cached_embedder()[0] if args.verifier_embedding else None  # MiniLM, as the shipped verifier's
    ds = designs(rows, embed, True)
    cands = candidates(all(r.answer.logprobs for r in rows), args.verifier_embedding)
    _, oofs = nested_report(ds, rows, cands, args.folds, args.folds - 1, 1, args.seed)
    print(f"{'source':<12}{'curve':<30}{'APGR':>7}{'cost@50%gap':>13}{'cost@80%gap':>13}")
    for source, (idx, d) in ds.items():
        src_rows = [rows[i] for i in idx]
        curves = source_curves(src_rows, oofs[source], args.cost_tier1, args.cost_tier2)
        wq, sq = float(d.weak.mean()), float(d.strong.mean())
        for name, (scores, c, _) in curves.items():
            a = apgr(curve(scores, d.weak, d.strong)) if wq != sq else float("nan")
            print(f"{source:<12}{name:<30}{a:>7.3f}{_cost_at(c, wq, sq, 0.5):>13.3f}{_cost_at(c, wq, sq, 0.8):>13.3f}")
        print(f"  -> {plot(source, curves, wq, sq, Path(args.plot_dir) / f'cascade-{source}.png')}")
    return 0
