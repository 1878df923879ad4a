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
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from app.routing.artifact import TOP_KIND, Artifact, KindsParams, KnnParams, LengthParams, LogisticParams, TopicParams, load_artifact
from app.routing.embed import Embedder, EmbedderConfig, get_embedder
from app.routing.scorers import (
    KnnScorer,
    LengthScorer,
    LogisticScorer,
    TopicScorer,
    centroid_score,
    hybrid_score,
    in_band,
    platt,
    softmax,
)
from app.routing.text import feature_matrix, prompt_text


class Decision(BaseModel):
    """How one request was routed (returned by /v1/route and attached to responses)."""

    tier: int = Field(ge=1, description="1 = the cheapest tier")
    complexity_score: float = Field(ge=0, le=1)
    confidence: float = Field(ge=0, le=1, description="0 at the threshold, 1 at the far end of traffic")
    threshold: float
    scorer: str
    kind: str | None = Field(None, description="the kind of traffic the prompt resembles most (the gate's choice)")
    signals: dict[str, float | None]
    llm_consulted: bool = False
    llm_fallback: str | None = Field(None, description="why the LLM rating was wanted but not used")
    router_latency_ms: float = 0.0


@dataclass
class EmbeddingScores:
    """Embedding-side scores of a batch of prompts (arrays of equal length)."""

    score: np.ndarray  # P(needs the large model), from the artifact's gate and experts
    centroid: np.ndarray
    quantile: np.ndarray  # score's place in the operating-point traffic
    kind: list[str]  # the kind of traffic each prompt resembles most (the gate's choice)

    def row(self, i: int) -> "EmbeddingScores":
        """Prompt ``i`` alone, as a batch of one."""
        return EmbeddingScores(self.score[i : i + 1], self.centroid[i : i + 1], self.quantile[i : i + 1], self.kind[i : i + 1])


def expert_scorer(p: KnnParams | TopicParams | LogisticParams | LengthParams):
    """The expert's raw-score function ``f(emb, feats)``."""
    if p.family == "topic":
        return TopicScorer(p.coef.array(), np.array(p.intercept), np.array(p.rates), p.length_weight, p.length_mean, p.length_std, p.topics).raw
    if p.family == "knn":
        return KnnScorer(p.reference.array(), p.labels.array(), p.k, p.temperature, p.length_weight, p.length_mean, p.length_std).raw
    if p.family == "logistic":
        return LogisticScorer(np.array(p.coef), p.intercept, np.array(p.mean), np.array(p.scale)).raw
    return LengthScorer().raw


class KindsScorer:
    """``score(emb, feats) -> (P(needs the large model), kind index)`` for a :class:`KindsParams`.

    The probability is the calibrated expert of the gate's most likely kind (``mixing`` ``top-kind``), or the
    gate-weighted mixture of every kind's calibrated expert (``mixture``, artifacts before the field).
    """

    def __init__(self, params: KindsParams):
        self.top_kind = params.mixing == TOP_KIND
        self.kinds = params.gate.kinds if params.gate else list(params.experts)
        self.experts = [(expert_scorer(params.experts[k].model), params.experts[k].platt) for k in self.kinds]
        g = params.gate
        self.gate = None if g is None else LogisticScorer(np.array(g.coef).T, 0.0, np.array(g.mean), np.array(g.scale))
        self.gate_intercept = None if g is None else np.array(g.intercept)

    def gate_probs(self, emb: np.ndarray, feats: np.ndarray) -> np.ndarray:
        if self.gate is None:
            return np.ones((len(np.atleast_2d(emb)), 1))
        return softmax(self.gate.raw(emb, feats) + self.gate_intercept)

    def __call__(self, emb: np.ndarray, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = self.gate_probs(emb, feats)
        p = np.stack([platt(f(emb, feats), a, b) for f, (a, b) in self.experts], axis=1)
        top = g.argmax(axis=1)
        if self.top_kind:
            return p[np.arange(len(top)), top], top
        return (g * p).sum(axis=1), top


class Router:
    def __init__(self, artifact: Artifact, embedder: Embedder | None = None):
        self.artifact = artifact
        self.embedder = embedder
        if embedder is not None:
            artifact.check_embedder(embedder.model_id, embedder.dim)
        self._score = KindsScorer(artifact.scorer)
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
        score, kind = self._score(emb, feature_matrix(texts))
        score = np.clip(score, 0.0, 1.0)
        centroid = centroid_score(np.atleast_2d(emb), self._complex, self._simple)
        return EmbeddingScores(score, centroid, self.artifact.quantile_of(score), [self._score.kinds[i] for i in kind])

    def wants_llm(self, quantile: float, threshold: float | None = None) -> bool:
        """Is the score (at ``quantile`` of traffic) within the band around the threshold (the artifact's, or a live one)?"""
        if self.artifact.hybrid.llm_weight == 0:  # fitted to add nothing: never spend the latency
            return False
        return in_band(float(quantile), self._quantile_of_threshold(threshold), self.artifact.hybrid.band)

    def _quantile_of_threshold(self, threshold: float | None) -> float:
        """The place of ``threshold`` (default: the artifact's) in the operating-point traffic."""
        if threshold is None or threshold == self.threshold:
            return self._q_threshold
        return float(self.artifact.quantile_of(threshold))

    def confidence(self, score: float, threshold: float | None = None) -> float:
        """0 at ``threshold`` (the artifact's, or the live one the decision used), 1 at the far end of traffic."""
        q, q_t = float(self.artifact.quantile_of(score)), self._quantile_of_threshold(threshold)
        room = q_t if q < q_t else 1.0 - q_t
        return float(min(1.0, abs(q - q_t) / room)) if room > 0 else 1.0

    def decide(
        self,
        scores: EmbeddingScores,
        llm_score: float | None = None,
        llm_fallback: str | None = None,
        started: float | None = None,
        threshold: float | None = None,
    ) -> Decision:
        """Decision for one prompt (``scores`` of a batch of one); ``llm_score`` in [0, 1] when the LLM answered.

        ``threshold`` overrides the artifact's (a share controller's live threshold); the decision carries
        the threshold it used, and its confidence is measured from that one.
        """
        emb_score = float(scores.score[0])
        threshold = self.threshold if threshold is None else float(threshold)
        consulted = llm_score is not None
        h = self.artifact.hybrid
        final = hybrid_score(emb_score, llm_score, h.llm_weight, h.llm_center)
        return Decision(
            tier=2 if final >= threshold else 1,
            complexity_score=final,
            confidence=self.confidence(final, threshold),
            threshold=threshold,
            scorer=("hybrid+" if consulted else "") + self.artifact.scorer.family,
            kind=scores.kind[0],
            signals={
                "embedding": emb_score,
                "centroid": float(scores.centroid[0]),
                "llm": llm_score,
                "traffic_quantile": float(scores.quantile[0]),
            },
            llm_consulted=consulted,
            llm_fallback=llm_fallback,
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
