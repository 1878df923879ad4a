"""Score tier 1's answer: the probability that tier 2 would do better, and whether to escalate.

One path for serving and ``tierroute verify``: :meth:`Verifier.texts` says which texts to embed for a
request and answer (an expert's embedding text, if one uses embeddings; else none), the caller
embeds them however it embeds (in process, or the Embedder deployment), and :meth:`Verifier.verdict`
computes the score from those embeddings, the answer's text features and, when the expert was fitted
with them, its log-probability features. :meth:`Verifier.verify` does both for a batch, in process.

The router LLM's check (the artifact's ``check`` block, :mod:`app.verification.check`): :meth:`Verifier.wants_check`
says whether a score is unsure enough to ask it, :meth:`Verifier.with_check` folds its P(no) into the verdict.
The caller asks (serving: :class:`app.serve.cascade.Judge`, with the router LLM's timeout); ``tierroute verify``
has no router LLM and gives the score alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from app.routing.artifact import ArtifactError
from app.routing.scorers import hybrid_score, in_band
from app.routing.logit import probability
from app.verification.artifact import VerifierArtifact, VerifierExpert
from app.verification.features import (
    answer_kind_features, code_features, execution_features, kind_features, logprob_features, text_features,
)  # fmt: skip

REQUEST_CHARS = 400  # of the request, in the request+answer embedding text
ANSWER_CHARS = 700  # of the answer's end, in either embedding text


@dataclass
class Answer:
    """One request and tier 1's answer to it; ``logprobs`` (per token) and ``tokens`` when the engine returned them."""

    request: str
    answer: str
    logprobs: Sequence[float] | None = None
    tokens: Sequence[str] | None = None


@dataclass
class Verdict:
    score: float  # P(tier 2 would do better than this answer)
    escalate: bool
    kind: str
    threshold: float
    signals: dict[str, float] = field(default_factory=dict)  # the features the expert used
    # the router LLM's check: None (not asked: no fitted check, or the score outside its band), "consulted",
    # or why the score alone decided: "not configured", "timeout", "failed"
    check: str | None = None
    check_p_no: float | None = None  # its P(answer not good enough), when consulted
    score_alone: float | None = None  # the verifier's score before the check moved it, when consulted


def answer_features(a: Answer, execute: bool = False) -> dict[str, float]:
    """Every feature of ``a`` an expert may use: text, request, and log-probability features (when ``a`` has them);
    with ``execute``, the execution check's ``exec_verdict`` too (else it is 0: could not tell)."""
    feats = text_features(a.request, a.answer) | kind_features(a.request) | code_features(a.request)
    feats |= answer_kind_features(a.answer)
    feats |= execution_features(a.request, a.answer) if execute else {"exec_verdict": 0.0}
    return feats | (logprob_features(a.logprobs, a.tokens) or {})


def embedding_text(a: Answer, which: str) -> str:
    """The text an expert embeds: the answer's end, the request's start with it, or the request (as the router embeds it)."""
    if which == "request":
        return a.request
    end = a.answer[-ANSWER_CHARS:]
    return end if which == "answer" else f"{a.request[:REQUEST_CHARS]}\n\n{end}"


class Verifier:
    def __init__(self, artifact: VerifierArtifact, threshold: float | None = None, execute: bool = True):
        """``execute``: run the execution check (:mod:`app.verification.execution`) for experts that read it."""
        self.artifact = artifact
        self.execute = execute
        self.threshold = artifact.threshold if threshold is None else threshold
        self.kinds = artifact.gate.kinds if artifact.gate else list(artifact.experts)
        g = artifact.gate
        self._gate = None if g is None else (np.array(g.coef), np.array(g.intercept), np.array(g.mean), np.array(g.scale))

    def check_embedder(self, model_id: str, dim: int) -> None:
        """The embedder must be the one the verifier was fitted with (raises ArtifactError naming both)."""
        want = self.artifact.embedder
        if want is not None and (model_id != want.model_id or dim != want.dim):
            raise ArtifactError(
                f"the verifier was fitted with embedding model {want.model_id!r} (dim {want.dim}) but the embedder is "
                f"{model_id!r} (dim {dim}); serve the verifier's embedder or refit it with `tierroute calibrate`"
            )

    def texts(self, a: Answer, feats: dict[str, float] | None = None) -> list[str]:
        """What to embed for ``a``: the embedding texts of the expert that judges it (none when it embeds nothing);
        ``feats``: ``answer_features(a)``, when the caller has them (:meth:`verdict` reads them too)."""
        if not any(e.embeds for e in self.artifact.experts.values()):
            return []
        e = self.artifact.experts[self.kind_of(feats if feats is not None else answer_features(a))]
        which = {e.embedding} | ({"request"} if e.strong_input == "request" else set())
        return [embedding_text(a, w) for w in sorted(which - {"none"})]

    def kind_of(self, feats: dict[str, float]) -> str:
        """The kind whose expert judges an answer with features ``feats`` (the gate over ``gate_features``)."""
        if self._gate is None:
            return self.kinds[0]
        coef, intercept, mean, scale = self._gate
        x = np.array([feats[f] for f in self.artifact.gate_features])
        return self.kinds[int(np.argmax(coef @ ((x - mean) / scale) + intercept))]

    def verdict(self, a: Answer, embeddings: dict[str, np.ndarray], feats: dict[str, float] | None = None) -> Verdict:
        """The verdict on ``a``; ``embeddings``: text -> its embedding, for each of :meth:`texts`; ``feats``: as in :meth:`texts`."""
        feats = dict(feats) if feats is not None else answer_features(a)  # a copy: the execution check adds to it
        kind = self.kind_of(feats)
        expert = self.artifact.experts[kind]
        if self.execute and "exec_verdict" in expert.features:
            feats |= execution_features(a.request, a.answer)
        emb = embeddings.get(embedding_text(a, expert.embedding)) if expert.embedding != "none" else None
        request_emb = embeddings.get(embedding_text(a, "request")) if expert.strong_input == "request" else None
        if (emb is None and expert.embedding != "none") or (request_emb is None and expert.strong_input == "request"):
            raise ValueError(f"the verifier's {kind} expert embeds texts: pass the embeddings of Verifier.texts")
        score = score_expert(expert, feats, emb, request_emb)
        used = {f: round(feats.get(f, 0.0), 4) for f in expert.features}
        return Verdict(score, score >= self.threshold, kind, self.threshold, used)

    def wants_check(self, score: float, threshold: float | None = None) -> bool:
        """Is ``score`` unsure enough to ask the router LLM: a fitted check (weight > 0) and ``score`` within its band
        of ``threshold`` (default this verifier's), in quantiles of the verifier's calibration scores?"""
        c = self.artifact.check
        if c is None or c.llm_weight == 0:
            return False
        t = self.threshold if threshold is None else threshold
        return in_band(c.quantile_of(score), c.quantile_of(t), c.band)

    def with_check(self, v: Verdict, p_no: float) -> Verdict:
        """``v`` with the router LLM's P(no) folded in: ``score + weight * (p_no - centre)``, clipped; escalation redecided."""
        c = self.artifact.check
        v.score_alone, v.check_p_no, v.check = v.score, float(p_no), "consulted"
        v.score = hybrid_score(v.score, p_no, c.llm_weight, c.llm_center)
        v.escalate = v.score >= v.threshold
        return v

    def verify(self, answers: list[Answer], embed: Callable[[list[str]], np.ndarray] | None) -> list[Verdict]:
        """Verdicts on a batch, embedding in one call (``embed`` may be None when nothing is embedded)."""
        feats = [answer_features(a) for a in answers]
        texts = sorted({t for a, f in zip(answers, feats) for t in self.texts(a, f)})
        if texts and embed is None:
            raise ValueError("this verifier embeds texts: pass an embedder")
        embs = dict(zip(texts, embed(texts))) if texts else {}
        return [self.verdict(a, embs, f) for a, f in zip(answers, feats)]


def expert_row(expert: VerifierExpert, feats: dict[str, float], emb: np.ndarray | None) -> np.ndarray:
    """The expert's input row: its features in order (one the answer lacks, e.g. log-probabilities: the
    training mean), then the embedding."""
    mean = expert.model.mean
    x = np.array([feats.get(f, mean[i]) for i, f in enumerate(expert.features)], dtype=np.float64)
    if expert.embedding != "none":
        x = np.concatenate([x, np.asarray(emb, dtype=np.float64)])
    return x


def expert_probability(expert: VerifierExpert, x: np.ndarray, request_emb: np.ndarray | None = None) -> np.ndarray:
    """The expert's score for its input row(s) ``x``: P(needs tier 2), or the product of its two models
    (``strong`` reading ``request_emb``, the request's embedding(s), when its ``strong_input`` is ``request``)."""
    p = probability(expert.model, x)
    if expert.strong is None:
        return p
    return p * probability(expert.strong, np.asarray(request_emb, dtype=np.float64) if expert.strong_input == "request" else x)


def score_expert(expert: VerifierExpert, feats: dict[str, float], emb: np.ndarray | None, request_emb: np.ndarray | None = None) -> float:
    return float(expert_probability(expert, expert_row(expert, feats, emb), request_emb))
