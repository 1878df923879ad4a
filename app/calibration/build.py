"""The artifact: the fitted router, its threshold on the nested out-of-fold scores, and what was measured.

Calibration in order: :func:`app.calibration.prepared.prepare` the data,
:func:`app.calibration.fit.fit_router` on all rows, :func:`app.calibration.nested.nested_cv` for the
honest figures, then :func:`build_artifact`; the command line that ran it is recorded as given.
"""

from __future__ import annotations

import numpy as np

from app import __version__
from app.calibration.data import PAIR_MODELS, pair_source
from app.calibration.fit import LABEL_PRIOR, Fit
from app.calibration.nested import Evaluation
from app.calibration.prepared import Prepared
from app.calibration.threshold import choose_threshold, mix_weights, source_shares, weighted_quantiles
from app.routing.artifact import Artifact, EmbedderInfo, Hybrid
from app.routing.embed import Embedder


def model_pair(p: Prepared) -> dict[str, object] | None:
    """The (tier 1, tier 2) models the data's outcome pairs name, when exactly one known pair is present
    (app.calibration.data.PAIR_MODELS, e.g. the Llama-3.1 8B/70B sources): the pair the artifact is for."""
    pairs = {s.split(":", 1)[1] for s in set(p.src) if ":" in s} & {pair_source("", k)[1:] for k in PAIR_MODELS}
    if len(pairs) != 1:
        return None
    (name,) = pairs
    tier1, tier2 = PAIR_MODELS[name.replace("-", "_")]
    return {"tier1": tier1, "tier2": tier2, "sources": sorted(s for s in set(p.src) if s.endswith(":" + name))}


def build_artifact(
    p: Prepared,
    embedder: Embedder,
    fit: Fit,
    evaluation: Evaluation,
    tier2_share: float | None = 0.15,
    recover: float | None = None,
    label_prior: float = LABEL_PRIOR,
    min_source_share: float = 0.0,
    command: str = "",
) -> Artifact:
    """The artifact of ``fit`` (chosen on all rows), its threshold set on the nested out-of-fold scores;
    ``command`` is the command line that built it (recorded in the artifact's ``build``)."""
    emb_c = p.emb[p.y == 1].mean(0) if (p.y == 1).any() else p.emb.mean(0)
    emb_s = p.emb[p.y == 0].mean(0) if (p.y == 0).any() else p.emb.mean(0)
    threshold, share = choose_threshold(p, evaluation.oof, tier2_share, recover, min_source_share)
    quantiles = weighted_quantiles(evaluation.oof, mix_weights(p), np.linspace(0, 1, 101))
    return Artifact(
        embedder=EmbedderInfo(model_id=embedder.model_id, dim=embedder.dim, prefix=embedder.config.prefix),
        centroids={"complex": emb_c.tolist(), "simple": emb_s.tolist()},
        scorer=fit.params,
        threshold=threshold,
        tier2_share=share,
        score_quantiles=np.maximum.accumulate(quantiles).tolist(),
        hybrid=Hybrid(fit={"note": "not fitted: default band, weight and centre (fit them with `tierroute calibrate --router-llm`)"}),
        operating_point={
            "traffic": "calibration mix: every kind weighs the same, every source the same within its kind",
            "kinds": sorted(set(p.kind)),
            "target": ({"tier2_share": tier2_share} if recover is None else {"recover": recover}) | {"min_source_share": min_source_share},
            "tier2_share_by_source": source_shares(p, evaluation.oof, threshold),
        },
        build={
            "tierroute_version": __version__,
            "command": command,
            "chosen": {k: c.chosen.name for k, c in fit.choices.items()},
            "mixing": fit.params.mixing,
            **({"pair": pair} if (pair := model_pair(p)) else {}),
            "label_prior": label_prior,
            "data": {"checksums": p.ds.checksums, "rows": {s: int((p.src == s).sum()) for s in sorted(set(p.src))}},
            "nested_cross_validation": {
                "by_source": evaluation.report,
                "chosen_per_fold": evaluation.chosen,
                **({"other_mixing": evaluation.other_mixing} if evaluation.other_mixing else {}),
            },
            "cross_validation": {k: c.table for k, c in fit.choices.items()},
        },
    )
