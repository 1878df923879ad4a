"""Serving a ladder of tiers: which tier a prompt goes to, from a route-mode ladder artifact. No Ray, no I/O.

Tiers ``0..N-1`` are ordered by cost. Boundary ``k`` (``0..N-2``) has a score, P(tier k is not enough:
some tier above it does better), and a threshold; tier k is judged sufficient iff ``score_k < t_k``, and
a prompt ends at the lowest tier judged sufficient (the top tier if none is): :func:`final_tier`.
:func:`thresholds_for_shares` sets thresholds that end given shares of a set of score rows at each tier
(offline on the calibration rows; live, :class:`app.routing.controller.LadderShareController`).

:class:`LadderRouter` serves a route-mode artifact (:mod:`app.routing.ladder_artifact`) in the same steps
as the two-tier :class:`app.routing.router.Router`: :meth:`LadderRouter.texts` (what to embed; the
embedder, configured with the artifact's model and prefix, prepends the prefix itself, as for the
two-tier router), :meth:`LadderRouter.scores` (a batch's per-boundary probabilities from the prompts and
their embeddings) and :meth:`LadderRouter.decide` / :meth:`LadderRouter.decision` (one prompt's tier).
A boundary's input row is the prompt's features (:func:`app.routing.text.features`, in the boundary's
``features`` order) followed by its embedding, in float64: the row the offline fit read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from app.routing.artifact import ArtifactError
from app.routing.ladder_artifact import LadderArtifact, load_ladder_artifact
from app.routing.text import FEATURE_NAMES, feature_matrix, prompt_text


def final_tier(scores: np.ndarray, thresholds) -> np.ndarray:
    """Per row, the tier it ends at (0-based): the first boundary whose score is below its threshold (else the top)."""
    s = np.asarray(scores, dtype=float)
    t = np.asarray(thresholds, dtype=float)
    stop = np.concatenate([s < t, np.ones((len(s), 1), dtype=bool)], axis=1)
    return stop.argmax(axis=1)


def _cut(scores: np.ndarray, frac: float) -> float:
    """The threshold that stops ``frac`` of ``scores`` (stop iff score < t), as near as ties allow."""
    if frac <= 0:
        return -np.inf
    if frac >= 1:
        return np.inf
    srt = np.sort(scores)
    n_stop = int(round(frac * len(srt)))
    if n_stop == 0:
        return -np.inf
    if n_stop >= len(srt):
        return np.inf
    lo, hi = srt[n_stop - 1], srt[n_stop]
    return (lo + hi) / 2 if lo < hi else np.nextafter(lo, np.inf)


def thresholds_for_shares(scores: np.ndarray, tier_shares) -> np.ndarray:
    """Thresholds that end ``tier_shares[k]`` of these rows at tier k (as near as ties allow): boundary by
    boundary, the quantile of the scores of the rows still climbing."""
    target = np.asarray(tier_shares, dtype=float)
    n_tiers = scores.shape[1] + 1
    if len(target) != n_tiers or (target < 0).any() or abs(target.sum() - 1) > 1e-6:
        raise ValueError(f"tier shares must be {n_tiers} non-negative numbers summing to 1, got {list(tier_shares)}")
    climbing = np.ones(len(scores), dtype=bool)
    out = np.empty(n_tiers - 1)
    for k in range(n_tiers - 1):
        left = target[k:].sum()
        s = scores[climbing, k]
        frac = 0.0 if left <= 0 or not len(s) else min(1.0, target[k] / left)
        out[k] = _cut(s, frac)
        climbing &= ~(scores[:, k] < out[k])
    return out


class LadderDecision(BaseModel):
    """How one request was routed on a ladder (for the ingress's response and logs)."""

    tier: int = Field(ge=1, description="1-based: the lowest tier judged sufficient (the top tier if none is)")
    tier_name: str
    model: str = Field(description="the model the tier was calibrated on")
    scores: list[float] = Field(description="per boundary k: P(tier k is not enough)")
    thresholds: list[float] = Field(description="per boundary: tier k is sufficient iff its score is below it")


class LadderRouter:
    """A route-mode ladder artifact served: prompts + embeddings -> per-boundary scores -> a tier."""

    def __init__(self, artifact: LadderArtifact):
        artifact.require_mode("route")
        if artifact.embedder is None:
            raise ArtifactError("ladder artifact field 'embedder': a route-mode ladder must name its embedding model")
        for k, b in enumerate(artifact.boundaries):
            unknown = [f for f in b.features if f not in FEATURE_NAMES]
            if unknown:
                raise ArtifactError(f"ladder artifact field 'boundaries.{k}.features': not prompt features {unknown} (known: {list(FEATURE_NAMES)})")
        self.artifact = artifact
        self.embedder = artifact.embedder
        self.thresholds = artifact.thresholds
        self._cols = [[FEATURE_NAMES.index(f) for f in b.features] for b in artifact.boundaries]

    @classmethod
    def load(cls, path=None) -> "LadderRouter":
        """The router of the ladder artifact at ``path`` (the shipped one when None)."""
        return cls(load_ladder_artifact(path))

    def check_embedder(self, model_id: str, dim: int) -> None:
        if model_id != self.embedder.model_id or dim != self.embedder.dim:
            raise ArtifactError(
                f"ladder artifact was built with embedding model {self.embedder.model_id!r} (dim {self.embedder.dim}) "
                f"but the router is using {model_id!r} (dim {dim}); refit it with --embedding-model {model_id!r} "
                "or use the embedder the artifact names"
            )

    def texts(self, prompt: str | list[dict[str, Any]]) -> list[str]:
        """What to embed for ``prompt`` (a prompt or chat messages): its routed text, without the prefix (the
        embedder configured with the artifact's prefix prepends it, as for the two-tier router)."""
        return [prompt_text(prompt)]

    def scores(self, prompts: list[str], embeddings: np.ndarray) -> np.ndarray:
        """P(tier k is not enough) per prompt and boundary (rows x boundaries); ``embeddings``: one row per prompt."""
        emb = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
        if len(emb) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(emb)} embeddings")
        if emb.shape[1] != self.embedder.dim:
            raise ValueError(f"embeddings of dimension {emb.shape[1]}; the ladder was built with {self.embedder.dim}")
        feats = feature_matrix(list(prompts)).astype(np.float64)
        out = np.empty((len(prompts), len(self.artifact.boundaries)))
        for k, (b, cols) in enumerate(zip(self.artifact.boundaries, self._cols)):
            x = np.hstack([feats[:, cols], emb]) if b.embedding else feats[:, cols]
            out[:, k] = b.probability(x)
        return out

    def decide(self, scores_row, thresholds=None) -> int:
        """The 1-based tier of one prompt's scores (thresholds: the artifact's, or e.g. a share controller's)."""
        t = self.thresholds if thresholds is None else np.asarray(thresholds, dtype=float)
        if len(t) != len(self.thresholds):
            raise ValueError(f"{len(t)} thresholds for {len(self.thresholds)} boundaries")
        return int(final_tier(np.asarray(scores_row, dtype=float)[None, :], t)[0]) + 1

    def decision(self, scores_row, thresholds=None) -> LadderDecision:
        """:meth:`decide` with what it read, for a response."""
        t = self.thresholds if thresholds is None else np.asarray(thresholds, dtype=float)
        tier = self.decide(scores_row, t)
        spec = self.artifact.tiers[tier - 1]
        return LadderDecision(tier=tier, tier_name=spec.name, model=spec.model, scores=[float(s) for s in scores_row], thresholds=[float(x) for x in t])
