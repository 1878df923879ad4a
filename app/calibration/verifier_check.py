"""Fit the verifier's check by the router LLM (``calibrate --verifier-check-llm MODEL --endpoint URL``).

The router LLM is asked, with exactly the serving request (:func:`app.verification.check.check_request`),
whether tier 1's answer to each of a bounded sample of answer rows is correct and complete (cached:
:class:`app.feedback.ratings.RatingCache`, prompt version ``check-v1``). Its P(no) is then fitted beside the
verifier's **nested out-of-fold** scores (no row scored by a verifier that saw it) with the router LLM's own
procedure (:func:`app.calibration.router_llm.fit_router_llm`): band (in quantiles of the verifier's scores),
weight and centre chosen by APGR inside the folds of a cross-validation, applied to the held-out fold, and
kept (weight > 0) only if the out-of-fold gain beats the gain of every one of 19 refits on P(no) shuffled
across rows. Otherwise the artifact's ``check`` block keeps weight 0 and says why: never consulted.
"""

from __future__ import annotations

import asyncio
import sys

import numpy as np
from scipy.stats import rankdata
from tqdm import tqdm

from app.calibration.answers import AnswerRow
from app.calibration.router_llm import Outcomes, fit_router_llm, format_fit
from app.calibration.verifier_build import threshold_for_share
from app.feedback.ratings import CHECK, RatingCache, rate_texts
from app.verification.artifact import VerifierArtifact, VerifierCheck
from app.verification.check import CHECK_PROMPT_VERSION

def check_sample(rows: list[AnswerRow], sources: list[str] | None, per_source: int, seed: int = 0) -> np.ndarray:
    """Up to ``per_source`` rows of each source in ``sources`` (all when None), drawn at random, sorted."""
    src = np.array([r.source for r in rows], dtype=object)
    want = sorted(set(src)) if not sources else list(sources)
    missing = sorted(set(want) - set(src))
    if missing:
        raise ValueError(f"--verifier-check-sources: {', '.join(missing)} not in the data (it has {', '.join(sorted(set(src)))})")
    rng = np.random.default_rng(seed)
    take = []
    for s in want:
        idx = np.flatnonzero(src == s)
        take.append(rng.choice(idx, size=min(per_source, len(idx)), replace=False))
    return np.sort(np.concatenate(take))


def fit_check(
    rows: list[AnswerRow], rated: np.ndarray, oof: np.ndarray, p_no: np.ndarray, escalation_share: float, model: str,
    quantiles: list[float], n_splits: int = 5, seed: int = 0, permutations: int | None = None,
) -> VerifierCheck:  # fmt: skip
    """The check block: ``oof`` (every row's nested out-of-fold verifier score), ``p_no`` (aligned with the
    ``rated`` rows), ``quantiles`` (the fitted verifier's calibration scores', for serving).

    The band is in quantiles of ``oof`` among all rows; the threshold's place there is where
    ``escalation_share`` of them lie at or above it (the verifier's own threshold rule)."""
    oof = np.asarray(oof, dtype=float)
    q_all = (rankdata(oof, "average") - 0.5) / len(oof)
    q_t = float((oof < threshold_for_share(oof, escalation_share)).mean())
    weak = np.array([r.weak for r in rows], dtype=float)
    strong = np.array([r.strong for r in rows], dtype=float)
    o = Outcomes(np.array([r.source for r in rows], dtype=object), (weak < strong).astype(np.float32), weak, strong)
    kw = {} if permutations is None else {"permutations": permutations}
    h = fit_router_llm(o, rated, oof[rated], q_all[rated], p_no, q_t, model, n_splits, seed, prompt_version=CHECK_PROMPT_VERSION, what="checks", **kw)
    h.fit["threshold_quantile"] = q_t
    h.fit["scores"] = "nested out-of-fold verifier scores"
    return VerifierCheck(**h.model_dump(), prompt_version=CHECK_PROMPT_VERSION, score_quantiles=quantiles)


def rate_and_fit_check(
    art: VerifierArtifact, rows: list[AnswerRow], oof: np.ndarray, model: str, endpoint: str, *, cache_path: str,
    api_key: str | None = None, sources: list[str] | None = None, per_source: int = 300, concurrency: int = 4,
    escalation_share: float = 0.25, n_splits: int = 5, seed: int = 0,
) -> VerifierCheck:  # fmt: skip
    """Ask ``model`` at ``endpoint`` to check tier 1's answers of a sample of ``rows`` (cached in ``cache_path``;
    progress and failures on stderr), then :func:`fit_check`. Fails when more than a tenth of the checks failed."""
    rated = check_sample(rows, sources, per_source, seed)
    items = [(rows[i].answer.request, rows[i].answer.answer) for i in rated]
    cache = RatingCache(cache_path)
    with tqdm(total=len(items), desc=f"checking answers with {model}", unit="answer") as bar:
        p_no, report = asyncio.run(rate_texts(items, model, endpoint, cache, api_key, concurrency, progress=bar, ask=CHECK))
    for f in report.failures:
        print(f"check failed: {f}", file=sys.stderr)
    print(f"checks: {report.cached} cached, {report.rated} new, {report.failed} failed (cache {cache.path})", file=sys.stderr)
    ok = np.array([x is not None for x in p_no])
    if ok.mean() < 0.9:
        raise ValueError(f"--verifier-check-llm {model}: {report.failed} of {len(items)} checks failed; rerun to retry them")
    quantiles = art.report.get("score_quantiles")
    if not quantiles:
        raise ValueError("the verifier's report lacks its calibration score quantiles (fit it with this version's `tierroute calibrate`)")
    return fit_check(
        rows, rated[ok], oof, np.array([x for x in p_no if x is not None]), escalation_share, model, quantiles, n_splits, seed
    )  # fmt: skip


def format_check(c: VerifierCheck) -> str:
    """What was fitted: the figures with and without the check (out of fold), and the decision."""
    f = c.fit
    head = format_fit(c).replace("router LLM", "verifier check by the router LLM", 1)
    used = f"band {c.band} (verifier-score quantiles), weight {c.llm_weight}, centre {c.llm_center:.3f}" if c.llm_weight > 0 else "weight 0: never consulted"
    return f"{head}\n   P(no): median {f['rating_median']:.3f}, spread {f['rating_spread']:.3f}; {used}"
