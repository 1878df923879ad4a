"""Routing metrics, defined once and used for every router and baseline.

Definitions follow RouteLLM (arXiv:2406.18665) and its evaluation code:

* A router gives each prompt a score; a prompt goes to the strong model iff
  ``score >= threshold``. Thresholds are the score quantiles that cut the data
  into ``n_bins`` equal bins (RouteLLM uses 10), plus one above the maximum
  (0 % strong calls), so the curve runs from 100 % to 0 % strong calls.
* Performance at a threshold is the mean outcome of the model each prompt went to.
* PGR = (performance - weak) / (strong - weak); APGR is the area under the
  performance curve over the share of strong calls (trapezoids), normalised the
  same way: 0 = no better than the weak model everywhere, 1 = strong everywhere.
* CPT(x) is the smallest share of strong calls at which PGR reaches x,
  interpolated linearly along the curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score


@dataclass(frozen=True)
class Curve:
    thresholds: np.ndarray  # routing threshold of each point
    strong_share: np.ndarray  # fraction of prompts sent to the strong model (ascending)
    performance: np.ndarray  # mean outcome at that point
    weak: float  # performance of the weak model alone
    strong: float  # performance of the strong model alone

    def pgr(self) -> np.ndarray:
        return (self.performance - self.weak) / (self.strong - self.weak)


def _arrays(scores, weak, strong) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s, w, g = (np.asarray(a, dtype=float) for a in (scores, weak, strong))
    if not (s.shape == w.shape == g.shape) or s.ndim != 1 or len(s) == 0:
        raise ValueError("scores, weak and strong must be 1-D arrays of the same non-zero length")
    return s, w, g


def routed_performance(scores, weak, strong, threshold: float) -> tuple[float, float]:
    """(strong share, performance) when prompts with ``score >= threshold`` go strong."""
    s, w, g = _arrays(scores, weak, strong)
    to_strong = s >= threshold
    return float(to_strong.mean()), float(np.where(to_strong, g, w).mean())


def curve(scores, weak, strong, n_bins: int = 10) -> Curve:
    """Performance vs. share of strong calls at the score-quantile thresholds."""
    s, w, g = _arrays(scores, weak, strong)
    edges = np.quantile(s, np.linspace(0.0, 1.0, n_bins + 1))
    thresholds = np.append(edges, np.nextafter(s.max(), np.inf))  # last: nothing goes strong
    pts = [routed_performance(s, w, g, t) for t in thresholds]
    order = np.lexsort(([p[1] for p in pts], [p[0] for p in pts]))
    share = np.array([pts[i][0] for i in order])
    perf = np.array([pts[i][1] for i in order])
    return Curve(thresholds[order], share, perf, float(w.mean()), float(g.mean()))


def apgr(c: Curve) -> float:
    """Average performance gap recovered (area under the PGR curve over strong share)."""
    if c.strong == c.weak:
        raise ValueError("APGR is undefined when the weak and strong models perform the same")
    span = c.strong_share[-1] - c.strong_share[0]
    area = np.trapezoid(c.performance, c.strong_share)
    return float((area - c.weak * span) / ((c.strong - c.weak) * span))


def cpt(c: Curve, target_pgr: float) -> float:
    """Smallest strong share at which the curve recovers ``target_pgr`` of the gap."""
    pgr = c.pgr()
    for i in range(len(pgr)):
        if pgr[i] >= target_pgr:
            if i == 0:
                return float(c.strong_share[0])
            x0, x1, y0, y1 = c.strong_share[i - 1], c.strong_share[i], pgr[i - 1], pgr[i]
            return float(x0 + (target_pgr - y0) * (x1 - x0) / (y1 - y0))
    return float(c.strong_share[-1])


def summarize(scores, weak, strong, n_bins: int = 10) -> dict[str, float]:
    c = curve(scores, weak, strong, n_bins)
    return {"apgr": apgr(c), "cpt50": cpt(c, 0.5), "cpt80": cpt(c, 0.8)}


def by_source(scores, src, weak, strong, labels) -> dict[str, float]:
    """One figure per source, the one calibration selects and reports by: ``"<source> APGR"`` where the
    source's rows all have outcomes (weak/strong, nan where a row has none) with a gap between the two
    models, else ``"<source> AUC"`` (ROC AUC of ``scores`` against the 0/1 ``labels``) where both classes occur."""
    scores, src, weak, strong, labels = (np.asarray(a) for a in (scores, src, weak, strong, labels))
    out = {}
    for s in sorted(set(src)):
        m = src == s
        if not np.isnan(weak[m]).any() and weak[m].mean() != strong[m].mean():
            out[f"{s} APGR"] = summarize(scores[m], weak[m], strong[m])["apgr"]
        elif len(set(labels[m])) == 2:
            out[f"{s} AUC"] = float(roc_auc_score(labels[m], scores[m]))
    return out


def selection_score(figures: dict[str, float]) -> float:
    """Mean over sources of APGR (outcome data) or ROC AUC (label-only data): 0.5 random, 1.0 perfect."""
    return float(np.mean(list(figures.values()))) if figures else float("nan")


RANDOM_SEEDS = range(20)  # the random baseline is the mean over these seeds, everywhere


def random_scores(n: int, seed: int = 0) -> np.ndarray:
    """The random router: a uniform score per prompt (expected APGR 0.5)."""
    return np.random.default_rng(seed).random(n)


def length_scores(texts: list[str]) -> np.ndarray:
    """The naive prompt-length router: longer prompt -> more likely tier 2."""
    return np.array([len(t) for t in texts], dtype=float)


def random_baseline(weak, strong, n_bins: int = 10) -> dict[str, float]:
    """APGR / CPT of the random router: the mean over :data:`RANDOM_SEEDS`."""
    runs = [summarize(random_scores(len(weak), seed), weak, strong, n_bins) for seed in RANDOM_SEEDS]
    return {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}


def bootstrap(n: int, stat, n_boot: int, seed: int = 0) -> np.ndarray:
    """``stat(indices)`` over ``n_boot`` resamples of ``range(n)`` with replacement; None results are dropped."""
    rng = np.random.default_rng(seed)
    out = (stat(rng.integers(0, n, n)) for _ in range(n_boot))
    return np.array([v for v in out if v is not None], dtype=float)


def lift_interval(
    scores, baseline, weak, strong, n_boot: int = 1000, level: float = 0.90, seed: int = 0, n_bins: int = 10
) -> dict[str, float]:
    """APGR(scores) - APGR(baseline) on these prompts, with a paired bootstrap interval.

    Prompts are resampled with replacement (the same resample for both routers),
    so the interval reflects how much the lift depends on which prompts were drawn.
    """
    return mean_lift_interval([scores], [baseline], weak, strong, n_boot, level, seed, n_bins)


def mean_lift_interval(
    scores: list, baselines: list, weak, strong, n_boot: int = 1000, level: float = 0.90, seed: int = 0, n_bins: int = 10
) -> dict[str, float]:
    """The mean over pairs of APGR(scores[r]) - APGR(baselines[r]) (e.g. the repeats of a nested
    cross-validation, each with its own folds), with a paired bootstrap interval over the prompts."""
    if not scores or len(scores) != len(baselines):
        raise ValueError("scores and baselines must be non-empty lists of the same length")
    _, w, g = _arrays(scores[0], weak, strong)
    pairs = [(_arrays(s, w, g)[0], _arrays(b, w, g)[0]) for s, b in zip(scores, baselines)]

    def lift(i):
        if w[i].mean() == g[i].mean():
            return None
        return float(np.mean([apgr(curve(s[i], w[i], g[i], n_bins)) - apgr(curve(b[i], w[i], g[i], n_bins)) for s, b in pairs]))

    boots = bootstrap(len(w), lift, n_boot, seed)
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2]) if len(boots) else (np.nan, np.nan)
    return {"lift": float(lift(np.arange(len(w)))), "low": float(lo), "high": float(hi), "level": level}


def format_lift(lift: dict[str, float]) -> str:
    """A lift with its interval as every report prints it: ``+0.062 [+0.039, +0.081]``."""
    return f"{lift['lift']:+.3f} [{lift['low']:+.3f}, {lift['high']:+.3f}]"


def cost_ratio(tier2_share: float, cost_tier1: float, cost_tier2: float) -> float:
    """Cost of routed traffic relative to sending everything to tier 2."""
    return (tier2_share * cost_tier2 + (1 - tier2_share) * cost_tier1) / cost_tier2


@dataclass(frozen=True)
class CostCurve:
    """Quality against cost when requests at or above a score go to tier 2 (or are escalated), per threshold."""

    cost: np.ndarray  # cost relative to sending every request to tier 2 (ascending)
    quality: np.ndarray  # mean outcome of the answers the clients get
    share: np.ndarray  # share of requests that reach tier 2


def cost_curve(scores, weak, strong, tier1_cost, tier2_cost, cascade: bool, n_points: int = 21) -> CostCurve:
    """Quality vs cost over thresholds at the scores' quantiles (plus none and all).

    ``tier1_cost``/``tier2_cost``: per request, what its tier-1 / tier-2 call costs (tokens x price).
    Routing before generation (``cascade`` False) pays one of them; a cascade pays tier 1 for every
    request and tier 2 too for the escalated ones -- the tier-1 tokens an escalated request spent are charged.
    """
    s, w, g = _arrays(scores, weak, strong)
    c1, c2 = np.asarray(tier1_cost, dtype=float), np.asarray(tier2_cost, dtype=float)
    thresholds = np.concatenate([np.quantile(s, np.linspace(0, 1, n_points)), [np.nextafter(s.max(), np.inf)]])
    pts = []
    for t in thresholds:
        up = s >= t
        cost = (c1 + up * c2).sum() if cascade else np.where(up, c2, c1).sum()
        pts.append((cost / c2.sum(), float(np.where(up, g, w).mean()), float(up.mean())))
    pts.sort()
    return CostCurve(*(np.array(v) for v in zip(*pts)))
