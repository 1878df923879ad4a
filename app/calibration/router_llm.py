"""Fit the router LLM's use on outcomes: the band, the LLM's weight and centre, by cross-validated APGR.

Serving consults the router LLM only when the embedding score is unsure -- within ``band`` (in
traffic quantiles) of the threshold -- and then uses ``score + weight * (rating - centre)``
(:func:`app.routing.scorers.hybrid_score`; the artifact keeps it in its ``hybrid`` block). Here:

* the embedding scores are the nested out-of-fold probabilities of ``calibrate`` (no row is scored
  by a model that saw it), the ratings those of the router LLM on the same prompts;
* the centre is the median rating of the rows a fold fits on (the LLM's "no opinion");
* band and weight are chosen on a grid by APGR (the mean over sources) inside each fold of a
  cross-validation, and applied to the held-out fold: the with-LLM figure is out of fold too;
* the LLM is kept (weight > 0) only if that out-of-fold gain over the embedding score alone beats the
  gain the same procedure finds with the ratings shuffled across prompts, every time in 19 shuffles
  (a permutation test, p <= 0.05): choosing a band and a weight finds some "gain" even in noise (with a
  one-standard-error rule, 6 of 20 shuffles of real ratings passed). Otherwise the weight is 0 -- the
  router never consults it -- and the artifact says why.

The verifier's check by the router LLM (:mod:`app.calibration.verifier_check`) is fitted by the same
functions, on the verifier's nested out-of-fold scores: ``p`` is then any :class:`Outcomes` (what
:func:`app.calibration.prepared.folds` and :func:`~app.calibration.prepared.source_figures` read of a
:class:`Prepared`).
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from app.calibration.metrics import bootstrap, selection_score
from app.calibration.prepared import Prepared, folds, source_figures
from app.feedback.ratings import RatingCache, rate_texts
from app.routing.artifact import Artifact, Hybrid
from app.routing.scorers import RATING_PROMPT_VERSION

BANDS = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
WEIGHTS = (0.05, 0.1, 0.2, 0.35, 0.5, 1.0)
BOOT = 200
PERMUTATIONS = 19  # shuffled-rating refits: the LLM is kept only if it beats all of them (p <= 0.05)
ALPHA = 0.05


@dataclass
class Outcomes:
    """Per row: source, training label, the two models' outcomes -- all the fit reads of a :class:`Prepared`."""

    src: np.ndarray
    y: np.ndarray
    weak: np.ndarray
    strong: np.ndarray


def blend(s: np.ndarray, q: np.ndarray, r: np.ndarray, q_t: float, band: float, weight: float, centre: float) -> np.ndarray:
    """The serving rule on arrays: inside the band, the score nudged by the rating; elsewhere unchanged."""
    out = s.copy()
    m = np.abs(q - q_t) <= band + 1e-9
    out[m] = np.clip(s[m] + weight * (r[m] - centre), 0.0, 1.0)
    return out


def _metric(p: Prepared, rows: np.ndarray, scores: np.ndarray) -> float:
    return selection_score(source_figures(p, scores, rows))


def _best(p, rows, s, q, r, q_t) -> tuple[float, float, float]:
    """(band, weight, centre) with the highest APGR on ``rows`` (arrays aligned with rows)."""
    centre = float(np.median(r))
    best, arg = -np.inf, (BANDS[0], 0.0, centre)
    for band in BANDS:
        for w in WEIGHTS:
            v = _metric(p, rows, blend(s, q, r, q_t, band, w, centre))
            if v > best + 1e-12:
                best, arg = v, (band, w, centre)
    return arg


def _cv_blend(p, rows, s, q, r, q_t, n_splits, seed) -> np.ndarray:
    """Out-of-fold hybrid scores: band and weight chosen on the other folds, applied to each held-out fold."""
    oof = s.copy()
    for train, test in folds(p, rows, n_splits, seed):
        band, w, c = _best(p, rows[train], s[train], q[train], r[train], q_t)
        oof[test] = blend(s[test], q[test], r[test], q_t, band, w, c)
    return oof


def fit_router_llm(
    p: Prepared | Outcomes,
    rows: np.ndarray,
    scores: np.ndarray,
    quantiles: np.ndarray,
    ratings: np.ndarray,
    threshold_quantile: float,
    model: str,
    n_splits: int = 5,
    seed: int = 0,
    permutations: int = PERMUTATIONS,
    prompt_version: str = RATING_PROMPT_VERSION,
    what: str = "ratings",
) -> Hybrid:
    """The hybrid for ``rows`` (outcome rows with a rating); ``scores``, ``quantiles``, ``ratings`` align with them.
    ``prompt_version``: of the request that gave the ratings (recorded in the fit); ``what`` they are, in the note."""
    if len(rows) < 50:
        raise ValueError(f"router LLM: {len(rows)} rated rows with outcomes are too few to fit its use (need >= 50)")
    s, q, r = (np.asarray(a, dtype=float) for a in (scores, quantiles, ratings))
    oof = _cv_blend(p, rows, s, q, r, threshold_quantile, n_splits, seed)
    without, with_llm = source_figures(p, s, rows), source_figures(p, oof, rows)
    base = selection_score(without)
    gain = selection_score(with_llm) - base
    # The same procedure on ratings shuffled across prompts (no information, the same distribution): how much
    # "gain" choosing a band and weight finds in noise. The LLM is kept only if its gain beats all of them.
    rng = np.random.default_rng(seed)
    null = np.array(
        [
            selection_score(source_figures(p, _cv_blend(p, rows, s, q, rng.permutation(r), threshold_quantile, n_splits, seed), rows))
            - base
            for _ in range(permutations)
        ]
    )
    p_value = float((1 + (null >= gain).sum()) / (permutations + 1))

    def diff(i):
        try:
            return _metric(p, rows[i], oof[i]) - _metric(p, rows[i], s[i])
        except ValueError:  # a resample without both outcomes
            return None

    se = float(np.std(bootstrap(len(rows), diff, BOOT, seed)))
    used = gain > 0 and p_value <= ALPHA
    fit = {
        "model": model, "prompt_version": prompt_version, "rows": int(len(rows)),
        "apgr_without_llm": without, "apgr_with_llm_cv": with_llm, "gain": gain, "gain_se": se,
        "shuffled_ratings_gain": {"mean": float(null.mean()), "max": float(null.max()), "n": permutations},
        "p_value": p_value, "used": used, "rating_median": float(np.median(r)), "rating_spread": float(np.std(r)),
    }  # fmt: skip
    if not used:
        fit["note"] = (
            f"the router LLM's {what} added nothing out of fold beyond what shuffled {what} add (gain {gain:+.3f}, "
            f"shuffled up to {null.max():+.3f}, p = {p_value:.2f}): weight 0, never consulted"
        )
        return Hybrid(band=0.0, llm_weight=0.0, llm_center=float(np.median(r)), fitted=True, fit=fit)
    band, w, c = _best(p, rows, s, q, r, threshold_quantile)
    fit["note"] = (
        f"band {band}, weight {w}, centre {c:.3f} chosen on all rated rows; gain out of fold beats every shuffling "
        f"of the {what} (p = {p_value:.2f})"
    )
    return Hybrid(band=band, llm_weight=w, llm_center=c, fitted=True, fit=fit)


def sample_rows(p: Prepared, limit: int | None, seed: int = 0) -> np.ndarray:
    """Up to ``limit`` outcome rows, the same share of each source (all when ``limit`` is None)."""
    has = np.flatnonzero(~np.isnan(p.weak))
    if limit is None or limit >= len(has):
        return has
    rng = np.random.default_rng(seed)
    take = []
    for src in sorted(set(p.src[has])):
        idx = has[p.src[has] == src]
        n = max(1, round(limit * len(idx) / len(has)))
        take.append(rng.choice(idx, size=min(n, len(idx)), replace=False))
    return np.sort(np.concatenate(take))


def rate_and_fit(
    art: Artifact,
    p: Prepared,
    oof: np.ndarray,
    model: str,
    endpoint: str,
    *,
    cache_path: str,
    api_key: str | None = None,
    limit: int | None = 600,
    concurrency: int = 4,
    n_splits: int = 5,
    seed: int = 0,
) -> Hybrid:
    """``calibrate --router-llm``: rate up to ``limit`` outcome rows with ``model`` at ``endpoint`` (cached in
    ``cache_path``; progress and failures on stderr) and fit its use on them beside ``oof``, the nested
    out-of-fold scores of ``art``'s router. Fails when more than a tenth of the ratings failed."""
    rows = sample_rows(p, limit, seed)
    if len(rows) == 0:
        raise ValueError("--router-llm needs calibration data with weak/strong outcomes")
    texts = [p.texts[i] for i in rows]
    cache = RatingCache(cache_path)
    with tqdm(total=len(texts), desc=f"rating with {model}", unit="prompt") as bar:
        ratings, report = asyncio.run(rate_texts(texts, model, endpoint, cache, api_key, concurrency, progress=bar))
    for f in report.failures:
        print(f"rating failed: {f}", file=sys.stderr)
    ok = np.array([r is not None for r in ratings])
    print(f"ratings: {report.cached} cached, {report.rated} new, {report.failed} failed (cache {cache.path})", file=sys.stderr)
    if ok.mean() < 0.9:
        raise ValueError(f"--router-llm {model}: {report.failed} of {len(texts)} ratings failed; rerun to retry them")
    rows, r = rows[ok], np.array([x for x in ratings if x is not None])
    threshold_quantile = float(art.quantile_of(art.threshold))
    return fit_router_llm(p, rows, oof[rows], art.quantile_of(oof[rows]), r, threshold_quantile, model, n_splits, seed)


def format_fit(h: Hybrid) -> str:
    f = h.fit
    cols = sorted(f["apgr_without_llm"])
    lines = [f"router LLM {f['model']} on {f['rows']} prompts with outcomes (prompt {f['prompt_version']}):"]
    lines += [f"   {c:<28} without {f['apgr_without_llm'][c]:.3f}   with (out of fold) {f['apgr_with_llm_cv'][c]:.3f}" for c in cols]
    lines.append(f"   gain {f['gain']:+.3f} (standard error {f['gain_se']:.3f}; shuffled ratings up to {f['shuffled_ratings_gain']['max']:+.3f}) -> {f['note']}")
    return "\n".join(lines)
