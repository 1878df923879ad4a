"""The router: artifact + embeddings -> a routing decision. No Ray, no I/O.

The Ray Serve graph calls the same three steps a request goes through here:
:meth:`Router.signals` (embedding signals of a batch), :meth:`Router.wants_llm`
(is the score inside the uncertainty band?) and :meth:`Router.decide` (final
tier, with the LLM's rating when one was obtained).
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
class Signals:
    """Embedding-side signals for a batch of prompts (arrays of equal length)."""

    score: np.ndarray  # the artifact's embedding scorer
    centroid: np.ndarray
    quantile: np.ndarray  # score's place in calibration traffic

    def row(self, i: int) -> "Signals":
        """Prompt ``i`` alone, as a batch of one."""
        return Signals(self.score[i : i + 1], self.centroid[i : i + 1], self.quantile[i : i + 1])


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
    def signals(self, emb: np.ndarray, texts: list[str]) -> Signals:
        score = np.clip(self._score(emb, feature_matrix(texts)), 0.0, 1.0)
        return Signals(score, centroid_score(np.atleast_2d(emb), self._complex, self._simple), self.artifact.quantile_of(score))

    def wants_llm(self, quantile: float) -> bool:
        return in_band(float(quantile), self._q_threshold, self.artifact.hybrid.band)

    def confidence(self, score: float) -> float:
        q = float(self.artifact.quantile_of(score))
        room = self._q_threshold if q < self._q_threshold else 1.0 - self._q_threshold
        return float(min(1.0, abs(q - self._q_threshold) / room)) if room > 0 else 1.0

    def decide(
        self,
        signals: Signals,
        i: int = 0,
        llm_score: float | None = None,
        fallback: str | None = None,
        started: float | None = None,
    ) -> Decision:
        """Decision for prompt ``i`` of a batch; ``llm_score`` in [0, 1] when the LLM answered."""
        emb_score = float(signals.score[i])
        consulted = llm_score is not None
        h = self.artifact.hybrid
        final = hybrid_score(emb_score, llm_score, h.llm_weight, h.llm_center)
        return Decision(
            tier=2 if final >= self.threshold else 1,
            complexity_score=final,
            confidence=self.confidence(final),
            threshold=self.threshold,
            scorer=("hybrid+" if consulted else "") + self.artifact.scorer.family,
            signals={
                "embedding": emb_score,
                "centroid": float(signals.centroid[i]),
                "llm": llm_score,
                "traffic_quantile": float(signals.quantile[i]),
            },
            llm_consulted=consulted,
            fallback=fallback,
            router_latency_ms=(time.perf_counter() - started) * 1000 if started else 0.0,
        )

    # --- conveniences for offline use ---------------------------------------
    def score_texts(self, texts: list[str], progress: bool = False) -> Signals:
        if self.embedder is None:
            raise RuntimeError("this Router has no embedder; pass one or use Router.load()")
        return self.signals(self.embedder.encode(texts, progress=progress), texts)

    def route(self, request: str | list[dict[str, Any]], llm_score: float | None = None) -> Decision:
        """Route one prompt or message list (the embedding score alone unless ``llm_score`` is given)."""
        t0 = time.perf_counter()
        sig = self.score_texts([prompt_text(request)])
        return self.decide(sig, 0, llm_score if self.wants_llm(sig.quantile[0]) else None, started=t0)
