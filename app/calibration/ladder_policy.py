"""How a ladder serves a prompt given its per-boundary scores and thresholds, and how thresholds are set.

Tiers ``0..N-1`` are ordered by cost. Boundary ``k`` (``0..N-2``) has a score, P(tier k is not enough:
some tier above it does better), and a threshold; tier k is judged sufficient iff ``score_k < t_k``. A
prompt ends at the lowest tier judged sufficient (the top tier if none is; :func:`final_tier` and
:func:`thresholds_for_shares` are defined at serve time, in :mod:`app.routing.ladder`):

* ``route`` (before generation): only that tier answers; its cost is that tier's.
* ``cascade``: tiers answer one rung at a time and the verifier reads each answer; the prompt pays every
  tier it visited (an escalated tier's tokens are charged).

Thresholds are set on a set of rows (the calibration mix, or training folds) for target shares per tier
(:func:`thresholds_for_shares`), for a quality target at least cost (:func:`thresholds_for_quality`) or
for the most quality within a budget (:func:`thresholds_for_budget`); the last two search a grid of the
scores' quantiles per boundary (:func:`grid`).
"""

from __future__ import annotations

import itertools

import numpy as np

from app.routing.ladder import final_tier, thresholds_for_shares  # serve-time: defined there, re-exported here

__all__ = [
    "MODES", "N_QUANTILES", "evaluate_grid", "final_tier", "grid", "outcome", "paid", "pick_budget", "pick_quality", "shares",
    "thresholds_for_budget", "thresholds_for_quality", "thresholds_for_shares",
]  # fmt: skip

MODES = ("route", "cascade")
N_QUANTILES = 21  # per boundary, the grid's thresholds are these quantiles of its scores, plus never / always escalate


def paid(costs: np.ndarray, tiers: np.ndarray, mode: str) -> np.ndarray:
    """Per row, what it cost: the final tier's cost (route) or every tier up to it (cascade)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    c = np.cumsum(costs, axis=1) if mode == "cascade" else costs
    return np.take_along_axis(c, tiers[:, None], axis=1)[:, 0]


def outcome(outcomes: np.ndarray, tiers: np.ndarray) -> np.ndarray:
    """Per row, the score of the answer the client gets (the final tier's)."""
    return np.take_along_axis(outcomes, tiers[:, None], axis=1)[:, 0]


def shares(tiers: np.ndarray, n_tiers: int) -> np.ndarray:
    return np.bincount(tiers, minlength=n_tiers) / max(len(tiers), 1)


def grid(scores: np.ndarray, n_quantiles: int = N_QUANTILES) -> np.ndarray:
    """Candidate threshold vectors (combos x boundaries): per boundary, quantiles of its scores, -inf (always
    escalate) and +inf (never escalate)."""
    per = []
    for k in range(scores.shape[1]):
        q = np.unique(np.quantile(scores[:, k], np.linspace(0, 1, n_quantiles)))
        per.append(np.concatenate([[-np.inf], q, [np.nextafter(q[-1], np.inf)], [np.inf]]))
    return np.array(list(itertools.product(*per)))


def evaluate_grid(scores, outcomes, costs, mode: str, combos: np.ndarray, chunk: int = 512, ref=None) -> tuple[np.ndarray, np.ndarray]:
    """(relative cost, mean quality) of each threshold combo on these rows; cost relative to all top tier (or to
    ``ref``, per row: the reference tier's cost, e.g. a wider ladder's top tier for a sub-ladder without it)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    s = np.asarray(scores, dtype=float)
    c = np.cumsum(costs, axis=1) if mode == "cascade" else np.asarray(costs, dtype=float)
    top = (costs[:, -1] if ref is None else np.asarray(ref, dtype=float)).sum()
    rel, qual = np.empty(len(combos)), np.empty(len(combos))
    for a in range(0, len(combos), chunk):
        t = combos[a : a + chunk]
        stop = s[None, :, :] < t[:, None, :]  # combos x rows x boundaries
        stop = np.concatenate([stop, np.ones(stop.shape[:2] + (1,), dtype=bool)], axis=2)
        f = stop.argmax(axis=2)  # combos x rows
        rows = np.arange(len(s))[None, :]
        rel[a : a + chunk] = c[rows, f].sum(axis=1) / top
        qual[a : a + chunk] = outcomes[rows, f].mean(axis=1)
    return rel, qual


def pick_budget(rel: np.ndarray, qual: np.ndarray, budget: float) -> int:
    """The combo with the most quality at relative cost <= budget (ties: the cheaper); the cheapest if none fits."""
    ok = np.flatnonzero(rel <= budget + 1e-12)
    if not len(ok):
        return int(np.argmin(rel))
    best = qual[ok].max()
    cand = ok[qual[ok] >= best - 1e-12]
    return int(cand[np.argmin(rel[cand])])


def pick_quality(rel: np.ndarray, qual: np.ndarray, target: float) -> int:
    """The cheapest combo whose quality reaches ``target`` (absolute); the best-quality one if none does."""
    ok = np.flatnonzero(qual >= target - 1e-12)
    if not len(ok):
        return int(np.argmax(qual))
    return int(ok[np.argmin(rel[ok])])


def thresholds_for_budget(scores, outcomes, costs, mode: str, budget: float) -> np.ndarray:
    combos = grid(scores)
    return combos[pick_budget(*evaluate_grid(scores, outcomes, costs, mode, combos), budget)]


def thresholds_for_quality(scores, outcomes, costs, mode: str, target_share_of_top: float) -> np.ndarray:
    """The cheapest thresholds whose mean quality reaches ``target_share_of_top`` x the top tier's on these rows."""
    combos = grid(scores)
    target = target_share_of_top * outcomes[:, -1].mean()
    return combos[pick_quality(*evaluate_grid(scores, outcomes, costs, mode, combos), target)]
