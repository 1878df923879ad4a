"""The operating point: the threshold on the score, and the tier-2 share it gives.

The threshold is set on a stated traffic mix -- each kind weighs the same, and each source the
same within its kind -- from the nested out-of-fold scores, for a tier-2 share or for a share of
the quality gap recovered (:func:`choose_threshold`); or on the user's own unlabelled traffic
(:func:`set_operating_point`).
"""

from __future__ import annotations

import numpy as np

from app.calibration.metrics import curve
from app.calibration.prepared import Prepared
from app.routing.artifact import Artifact

def mix_weights(p: Prepared) -> np.ndarray:
    """The default traffic mix: every kind weighs the same, and every source the same within its kind."""
    w = np.zeros(len(p.y))
    kinds = sorted(set(p.kind))
    for k in kinds:
        sources = sorted(set(p.src[p.kind == k]))
        for s in sources:
            m = (p.kind == k) & (p.src == s)
            w[m] = 1.0 / (m.sum() * len(sources) * len(kinds))
    return w


def weighted_quantiles(x: np.ndarray, w: np.ndarray, qs: np.ndarray) -> np.ndarray:
    order = np.argsort(x)
    cw = np.cumsum(w[order])
    cw = (cw - 0.5 * w[order]) / cw[-1]
    return np.interp(qs, cw, x[order])


def choose_threshold(
    p: Prepared, oof: np.ndarray, tier2_share: float | None, recover: float | None, min_source_share: float = 0.0
) -> tuple[float, float]:
    """(threshold, resulting tier-2 share of the default traffic mix).

    With ``min_source_share``, the threshold is lowered where needed so that no source gets a
    smaller tier-2 share than that (a kind whose expert is unsure keeps its probabilities near its
    base rate, and one mix-wide threshold can then send almost none of it to tier 2).
    """
    w = mix_weights(p)
    if recover is not None:
        has = ~np.isnan(p.weak)
        if not has.any():
            raise ValueError("--recover needs data with weak/strong outcomes")
        c = curve(oof[has], p.weak[has], p.strong[has], n_bins=100)
        pgr = c.pgr()
        i = int(np.argmax(pgr >= recover)) if (pgr >= recover).any() else len(pgr) - 1
        threshold = float(c.thresholds[i])
    else:
        share = 0.15 if tier2_share is None else tier2_share
        threshold = float(weighted_quantiles(oof, w, np.array([1.0 - share]))[0])
    if min_source_share > 0:
        floors = [np.quantile(oof[p.src == s], 1.0 - min_source_share, method="inverted_cdf") for s in sorted(set(p.src))]
        threshold = min(threshold, float(min(floors)))
    share = float((w * (oof >= threshold)).sum() / w.sum())
    return threshold, share


def source_shares(p: Prepared, scores: np.ndarray, threshold: float) -> dict[str, float]:
    return {s: float((scores[p.src == s] >= threshold).mean()) for s in sorted(set(p.src))}


def set_operating_point(art: Artifact, scores: np.ndarray, tier2_share: float, traffic: str) -> Artifact:
    """The threshold at the (1 - share) quantile of the user's own traffic's scores."""
    if len(scores) < 20:
        raise ValueError(f"--traffic: {len(scores)} prompts are too few to set a threshold on (need >= 20)")
    threshold = float(np.quantile(scores, 1.0 - tier2_share))
    quantiles = np.maximum.accumulate(np.quantile(scores, np.linspace(0, 1, 101)))
    return art.model_copy(
        update={
            "threshold": threshold,
            "tier2_share": float((scores >= threshold).mean()),
            "score_quantiles": quantiles.tolist(),
            "operating_point": {"traffic": traffic, "prompts": len(scores), "target_tier2_share": tier2_share},
        }
    )
