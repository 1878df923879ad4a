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


def random_scores(n: int, seed: int = 0) -> np.ndarray:
    """The random router: a uniform score per prompt (expected APGR 0.5)."""
    return np.random.default_rng(seed).random(n)


def length_scores(texts: list[str]) -> np.ndarray:
    """The naive prompt-length router: longer prompt -> more likely tier 2."""
    return np.array([len(t) for t in texts], dtype=float)


def cost_ratio(tier2_share: float, cost_tier1: float, cost_tier2: float) -> float:
    """Cost of routed traffic relative to sending everything to tier 2."""
    return (tier2_share * cost_tier2 + (1 - tier2_share) * cost_tier1) / cost_tier2
