"""Fit a ladder artifact (``tierroute calibrate --ladder``): per boundary a chosen, fitted scorer, then thresholds.

Per boundary k, the candidate is chosen by cross-validation on all the calibration rows (as the nested
evaluation does inside each outer fold: :func:`app.calibration.ladder_eval.fit_boundary`) and fitted on all
of them; its out-of-fold scores on those rows set the thresholds, for target shares per tier
(``--tier-shares``) or for a quality target at least cost (``--target-quality``, a share of the top tier's
mean score). The card records the shares, quality and cost those thresholds give on the calibration rows.
Honest (nested) figures come from ``tierroute evaluate --ladder``; several sources are pooled into one mix.
"""

from __future__ import annotations

import numpy as np

from app.calibration.ladder_artifact import Boundary, LadderArtifact, Tier
from app.calibration.ladder_eval import SourceInputs, _inner_oof, boundary_design, scorer_candidates
from app.calibration.ladder_policy import final_tier, outcome, paid, shares, thresholds_for_quality, thresholds_for_shares
from app.calibration.ladder_prices import Price
from app.calibration.verifier_fit import choose, fit_expert
from app.routing.artifact import EmbedderInfo


def _stored(t: float) -> float:
    """A threshold as JSON can hold it: probabilities lie in [0, 1], so -1 = always escalate, 2 = never."""
    return -1.0 if t == -np.inf else (2.0 if t == np.inf else float(t))


def build_ladder(
    inp: SourceInputs, tiers: list[str], prices: dict[str, Price], mode: str, tier_shares: list[float] | None = None,
    target_quality: float | None = None, n_folds: int = 5, seed: int = 0, embedder: EmbedderInfo | None = None,
    command: str | None = None,
) -> LadderArtifact:  # fmt: skip
    if (tier_shares is None) == (target_quality is None):
        raise ValueError("give exactly one of --tier-shares and --target-quality")
    if tier_shares is not None and len(tier_shares) != len(tiers):
        raise ValueError(f"--tier-shares: {len(tiers)} tiers need {len(tiers)} shares, got {len(tier_shares)}")
    scorer = "verifier" if mode == "cascade" else "embedding"
    rows = np.arange(len(inp.data.rows))
    oof = np.zeros((len(rows), len(tiers) - 1))
    fitted = []
    for k in range(len(tiers) - 1):
        d = boundary_design(inp, tiers, k, scorer)
        best, table = choose(scorer_candidates(scorer), d, rows, n_folds - 1, seed)
        oof[:, k] = _inner_oof(best, d, rows, n_folds - 1, seed)
        fitted.append((best, fit_expert(best, d, rows), table))
    outcomes = np.stack([inp.score(m) for m in tiers], axis=1)
    costs = np.stack([inp.costs[m] for m in tiers], axis=1)
    if tier_shares is not None:
        t = thresholds_for_shares(oof, tier_shares)
        how = {"tier_shares": list(tier_shares)}
    else:
        t = thresholds_for_quality(oof, outcomes, costs, mode, target_quality)
        how = {"target_quality": target_quality}
    f = final_tier(oof, t)
    boundaries = []
    for k, (best, e, table) in enumerate(fitted):
        boundaries.append(Boundary(
            tier=tiers[k], above=tiers[k + 1 :], reads="answer" if mode == "cascade" else "prompt", candidate=best.name,
            features=list(best.features), embedding=best.embedding != "none", form=best.form, model=e.model, strong=e.strong,
            threshold=_stored(t[k]),
        ))  # fmt: skip
    card = {
        "tiers": [{"tier": k + 1, "model": m} for k, m in enumerate(tiers)],
        "thresholds_set_for": how,
        "rows": len(rows),
        "sources": inp.data.sources(),
        "data": inp.data.checksums,
        "on_calibration_rows": {
            "note": "out-of-fold boundary scores on the calibration rows; nested figures: tierroute evaluate --ladder",
            "tier_shares": np.round(shares(f, len(tiers)), 4).tolist(),
            "quality": round(float(outcome(outcomes, f).mean()), 4),
            "top_tier_quality": round(float(outcomes[:, -1].mean()), 4),
            "cost_relative_to_top_tier": round(float(paid(costs, f, mode).sum() / costs[:, -1].sum()), 4),
        },
        "chosen": {tiers[k]: b.candidate for k, b in enumerate(boundaries)},
        "command": command,
    }
    return LadderArtifact(
        mode=mode, tiers=[Tier(name=f"tier{k + 1}", model=m, price=prices[m]) for k, m in enumerate(tiers)],
        boundaries=boundaries, embedder=embedder if mode == "route" else None, card=card,
    )  # fmt: skip


def format_card(art: LadderArtifact) -> str:
    tiers = " > ".join(f"{t.name} {t.model} (${t.price.input:g}/${t.price.output:g} per 1M)" for t in art.tiers)
    th = ", ".join(f"{b.tier}: {b.threshold:.4f} ({b.candidate})" for b in art.boundaries)
    head = f"ladder ({art.mode}): {tiers}\nthresholds (sufficient iff P(not enough) < threshold): {th}\n"
    if "on_traffic" in art.card:  # retarget: set on the user's prompts, no outcomes there
        return head + (
            f"set for {art.card['thresholds_set_for']}: tier shares {art.card['on_traffic']['tier_shares']} on that traffic "
            f"(fitted on {art.card['rows']} calibration rows: {', '.join(art.card['sources'])}; no outcomes in traffic, so no quality or cost)"
        )
    c = art.card["on_calibration_rows"]
    return head + (
        f"set for {art.card['thresholds_set_for']} on {art.card['rows']} calibration rows ({', '.join(art.card['sources'])}): "
        f"tier shares {c['tier_shares']}, quality {c['quality']:.4f} (top tier {c['top_tier_quality']:.4f}), "
        f"cost {c['cost_relative_to_top_tier']:.4f} of all top tier (out-of-fold scores; nested figures: evaluate --ladder)"
    )


def retarget(art: LadderArtifact, prompts: list[str], embeddings: np.ndarray, tier_shares: list[float], traffic: str) -> LadderArtifact:
    """``art`` (route mode) with thresholds that end ``tier_shares`` of ``prompts`` (your traffic, before generation:
    no outcomes needed) at each tier, scored as serving scores them (:class:`app.routing.ladder.LadderRouter`). The
    card says so and gives the shares on the traffic; its calibration-row figures are dropped (they were for the
    calibration mix's thresholds)."""
    from app.routing.ladder import LadderRouter

    if len(prompts) < 10 * len(tier_shares):
        raise ValueError(f"--traffic: {len(prompts)} prompts are too few to set {len(tier_shares)} shares (at least {10 * len(tier_shares)})")
    scores = LadderRouter(art).scores(prompts, embeddings)
    t = thresholds_for_shares(scores, tier_shares)
    boundaries = [b.model_copy(update={"threshold": _stored(x)}) for b, x in zip(art.boundaries, t)]
    card = {k: v for k, v in art.card.items() if k != "on_calibration_rows"}
    card["thresholds_set_for"] = {"tier_shares": list(tier_shares), "traffic": traffic, "prompts": len(prompts)}
    card["on_traffic"] = {"tier_shares": np.round(shares(final_tier(scores, t), len(art.tiers)), 4).tolist()}
    return art.model_copy(update={"boundaries": boundaries, "card": card})
