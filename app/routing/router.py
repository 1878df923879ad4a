"""The router: artifact + embeddings -> a routing decision. No Ray, no I/O.

The Ray Serve graph calls the same three steps a request goes through here:
:meth:`Router.score_embeddings` (the embedding-side scores of a batch),
:meth:`Router.wants_llm` (is the score inside the uncertainty band?) and
:meth:`Router.decide` (final tier of one prompt, with the LLM's rating when one
was obtained). "Signals" means one thing only: the ``Decision.signals`` dict
that reports them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from app.routing.artifact import Artifact, KnnParams, LogisticParams, load_artifact
from app.routing.embed import Embedder, EmbedderConfig, get_embedder
from app.routing.scorers import KnnScorer, LogisticScorer, blend_scores, centroid_score, hybrid_score, in_band
from app.routing.text import feature_matrix, prompt_text


class Decision(BaseModel):
    """How one request was routed (returned by /v1/route and attached to responses)."""

    tier: Literal[1, 2]
    complexity_score: float = Field(ge=0, le=1)
    confidence: float = Field(ge=0, le=1, description="0 at the threshold, 1 at the far end of traffic")
    threshold: float
    scorer: str
    signals: dict[str, float | None]
    llm_consulted: bool = False
    fallback: str | None = Field(None, description="why the LLM rating was wanted but not used")
    router_latency_ms: float = 0.0


@dataclass
class EmbeddingScores:
    """Embedding-side scores of a batch of prompts (arrays of equal length)."""

    score: np.ndarray  # the artifact's embedding scorer
    centroid: np.ndarray
    quantile: np.ndarray  # score's place in calibration traffic

    def row(self, i: int) -> "EmbeddingScores":
        """Prompt ``i`` alone, as a batch of one."""
        return EmbeddingScores(self.score[i : i + 1], self.centroid[i : i + 1], self.quantile[i : i + 1])


def build_scorer(artifact: Artifact):
    """``f(emb, feats) -> scores`` for the artifact's embedding scorer."""
    p = artifact.scorer

    def knn(p: KnnParams):
        return KnnScorer(p.reference.array(), p.labels.array(), p.k, p.temperature, p.length_weight, p.length_mean, p.length_std).score

    def logistic(p: LogisticParams):
        return LogisticScorer(np.array(p.coef), p.intercept, np.array(p.mean), np.array(p.scale)).score

    if p.family == "knn":
        return knn(p)
    if p.family == "logistic":
        return logistic(p)
    if p.family == "blend":
        f_knn, f_lr, w = knn(p.knn), logistic(p.logistic), p.weight
        return lambda emb, feats: blend_scores(f_knn(emb, feats), f_lr(emb, feats), w)
    c, s = np.array(artifact.centroids["complex"]), np.array(artifact.centroids["simple"])
    return lambda emb, feats: centroid_score(emb, c, s)


class Router:
    def __init__(self, artifact: Artifact, embedder: Embedder | None = None):
        self.artifact = artifact
        self.embedder = embedder
        if embedder is not None:
            artifact.check_embedder(embedder.model_id, embedder.dim)
        self._score = build_scorer(artifact)
        self._complex = np.array(artifact.centroids["complex"], dtype=np.float32)
        self._simple = np.array(artifact.centroids["simple"], dtype=np.float32)
        self.threshold = artifact.threshold
        self._q_threshold = float(artifact.quantile_of(artifact.threshold))

    @classmethod
    def load(cls, artifact_path=None, embedder_config: EmbedderConfig | None = None) -> "Router":
        """Router with its artifact's embedding model (or the given one, checked against it)."""
        art = load_artifact(artifact_path)
        cfg = embedder_config or EmbedderConfig(model=art.embedder.model_id, prefix=art.embedder.prefix)
        return cls(art, get_embedder(cfg))

    # --- the steps -----------------------------------------------------------
    def score_embeddings(self, emb: np.ndarray, texts: list[str]) -> EmbeddingScores:
        score = np.clip(self._score(emb, feature_matrix(texts)), 0.0, 1.0)
        return EmbeddingScores(score, centroid_score(np.atleast_2d(emb), self._complex, self._simple), self.artifact.quantile_of(score))

    def wants_llm(self, quantile: float) -> bool:
        return in_band(float(quantile), self._q_threshold, self.artifact.hybrid.band)

    def confidence(self, score: float) -> float:
        q = float(self.artifact.quantile_of(score))
        room = self._q_threshold if q < self._q_threshold else 1.0 - self._q_threshold
        return float(min(1.0, abs(q - self._q_threshold) / room)) if room > 0 else 1.0

    def decide(
        self,
        scores: EmbeddingScores,
        llm_score: float | None = None,
        fallback: str | None = None,
        started: float | None = None,
        threshold: float | None = None,
    ) -> Decision:
        """Decision for one prompt (``scores`` of a batch of one); ``llm_score`` in [0, 1] when the LLM answered.

        ``threshold`` overrides the artifact's (a share controller's live threshold).
        """
        emb_score = float(scores.score[0])
        threshold = self.threshold if threshold is None else float(threshold)
        consulted = llm_score is not None
        h = self.artifact.hybrid
        final = hybrid_score(emb_score, llm_score, h.llm_weight, h.llm_center)
        return Decision(
            tier=2 if final >= threshold else 1,
            complexity_score=final,
            confidence=self.confidence(final),
            threshold=threshold,
            scorer=("hybrid+" if consulted else "") + self.artifact.scorer.family,
            signals={
                "embedding": emb_score,
                "centroid": float(scores.centroid[0]),
                "llm": llm_score,
                "traffic_quantile": float(scores.quantile[0]),
            },
            llm_consulted=consulted,
            fallback=fallback,
            router_latency_ms=(time.perf_counter() - started) * 1000 if started else 0.0,
        )

    # --- conveniences for offline use ---------------------------------------
    def score_texts(self, texts: list[str], progress: bool = False) -> EmbeddingScores:
        if self.embedder is None:
            raise RuntimeError("this Router has no embedder; pass one or use Router.load()")
        return self.score_embeddings(self.embedder.encode(texts, progress=progress), texts)

    def route(self, request: str | list[dict[str, Any]], llm_score: float | None = None) -> Decision:
        """Route one prompt or message list (the embedding score alone unless ``llm_score`` is given)."""
        t0 = time.perf_counter()
        sc = self.score_texts([prompt_text(request)])
        return self.decide(sc, llm_score if self.wants_llm(sc.quantile[0]) else None, started=t0)
