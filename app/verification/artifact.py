"""The verifier artifact: one versioned JSON file, the verifier of one model pair.

It names the pair it was fitted for (tier 1 / tier 2 models), the embedder (only when an expert uses
embeddings), a gate (the answer's format -> kind; none with one kind: text added to a request cannot move it to another kind's expert) and, per
kind, an expert: a logistic model over answer features (:mod:`app.verification.features`) and, where it
paid, the embedding of the request and the answer's end, whose output is P(tier 2 would do better than
tier 1's answer). ``threshold``: escalate at or above it. ``report``: how it was fitted and what it
measured (nested cross-validation per source), for ``tierroute show``. ``check`` (optional): when and how
much the router LLM's yes/no check of the answer moves the score (:mod:`app.verification.check`); an
artifact without it never consults the router LLM.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.files import write_atomic
from app.routing.artifact import EmbedderInfo, Gate, Hybrid, read_model
from app.routing.logit import Logit  # re-exported: the verifier's experts are Logits
from app.verification.features import ANSWER_KIND_FEATURES

FORMAT = "tierroute.verifier"
VERSION = 1
DEFAULT_VERIFIER = Path(__file__).parent / "artifacts" / "default.json"
Embedding = Literal["none", "answer", "request_answer"]
StrongInput = Literal["same", "request"]


class Pair(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tier1: str = Field(min_length=1, description="the small model whose answers it judges, e.g. meta-llama/Llama-3.1-8B-Instruct")
    tier2: str = Field(min_length=1, description="the model it escalates to")


class VerifierExpert(BaseModel):
    """P(tier 2 does better | request, answer) for one kind of request.

    ``form`` ``needs_strong``: ``model`` is that probability, fitted on "tier 1 wrong and tier 2 right";
    ``product``: ``model`` is P(tier 1's answer is wrong), ``strong`` P(tier 2 answers right), and the
    score is their product -- an answer tier 1 got wrong on a problem tier 2 fails too is not worth
    escalating. The input row is ``features`` in order, then the embedding's dimensions (when ``embedding``).
    ``strong_input`` ``request``: ``strong`` reads the request's embedding alone (how hard the question is for
    tier 2 shows in what it asks; whether tier 1 got it wrong shows in its answer).
    """

    model_config = ConfigDict(extra="forbid")
    candidate: str = Field(description="the candidate nested selection chose, e.g. 'product text+prompt C=0.1'")
    features: list[str] = Field(description="answer and request features, in input order (then the embedding's dimensions)")
    embedding: Embedding = Field("none", description="which text is embedded: none, the answer's end, or request + answer's end")
    form: Literal["needs_strong", "product"] = "needs_strong"
    model: Logit
    strong: Logit | None = None
    strong_input: StrongInput = Field("same", description="what strong reads: the same row as model, or the request's embedding alone")

    @model_validator(mode="after")
    def _shape(self):
        n = len(self.model.coef)
        if self.embedding == "none" and n != len(self.features):
            raise ValueError(f"{len(self.features)} features but {n} coefficients")
        if (self.form == "product") != (self.strong is not None):
            raise ValueError("strong: required by form 'product', and only by it")
        if self.strong_input == "request" and self.form != "product":
            raise ValueError("strong_input: 'request' needs form 'product'")
        if self.strong is not None and self.strong_input == "same" and len(self.strong.coef) != n:
            raise ValueError("strong: its input row differs from model's")
        return self

    @property
    def embeds(self) -> bool:
        """Whether judging with it needs an embedding (of the answer, or of the request for ``strong``)."""
        return self.embedding != "none" or self.strong_input == "request"


class VerifierCheck(Hybrid):
    """The router LLM's check (``calibrate --verifier-check-llm``): consulted when the verifier's score is within
    ``band`` of the threshold in quantiles of its calibration scores (``score_quantiles``); then the score is
    ``score + llm_weight * (P(no) - llm_center)``, clipped to [0, 1]. ``llm_weight`` 0: never consulted
    (``fit['note']`` says why)."""

    llm_weight: float = Field(0.0, ge=0, le=1, description="0: the check is never consulted (it added nothing)")
    prompt_version: str = Field(description="the check request it was fitted with (app.verification.check.CHECK_PROMPT_VERSION)")
    score_quantiles: list[float] = Field(min_length=2, description="the verifier's scores on its calibration rows, quantiles 0..100%")

    @field_validator("score_quantiles")
    @classmethod
    def _sorted(cls, v: list[float]) -> list[float]:
        if any(b < a for a, b in zip(v, v[1:])):
            raise ValueError("score_quantiles must be non-decreasing")
        return v

    def quantile_of(self, score: float) -> float:
        """Where ``score`` lies among the verifier's calibration scores, in [0, 1] (as the router artifact's)."""
        q = np.asarray(self.score_quantiles)
        return float(np.interp(score, q, np.linspace(0, 1, len(q))))


class VerifierArtifact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["tierroute.verifier"] = FORMAT
    version: int = VERSION
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    pair: Pair
    embedder: EmbedderInfo | None = Field(None, description="the embedding model (None when no expert uses embeddings)")
    gate: Gate | None = Field(None, description="gate_features -> kind; None with one kind")
    gate_features: list[str] = Field(
        default_factory=lambda: list(ANSWER_KIND_FEATURES), description="what the gate reads: the answer's format (features.ANSWER_KIND_FEATURES)"
    )
    experts: dict[str, VerifierExpert] = Field(min_length=1)
    threshold: float = Field(ge=0, le=1, description="escalate when the score is at or above it")
    report: dict[str, Any] = Field(default_factory=dict, description="command, data, nested figures per source")
    check: VerifierCheck | None = Field(None, description="the router LLM's yes/no check in an uncertainty band; None: never consulted")

    @field_validator("version")
    @classmethod
    def _supported(cls, v: int) -> int:
        if v != VERSION:
            raise ValueError(f"verifier version {v} is not supported (expects {VERSION}); refit it with `tierroute calibrate`")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        if self.gate is None and len(self.experts) != 1:
            raise ValueError("experts: more than one kind needs a gate")
        if self.gate is not None and sorted(self.gate.kinds) != sorted(self.experts):
            raise ValueError(f"gate.kinds {self.gate.kinds} and experts {sorted(self.experts)} differ")
        if any(e.embeds for e in self.experts.values()) and self.embedder is None:
            raise ValueError("embedder: an expert uses embeddings, so the artifact must name its embedder")
        for kind, e in self.experts.items():
            if e.strong_input == "request" and self.embedder is not None and len(e.strong.coef) != self.embedder.dim:
                raise ValueError(f"experts.{kind}.strong: {len(e.strong.coef)} coefficients for the request's {self.embedder.dim}-dimensional embedding")
        return self

    def save(self, path: str | Path) -> Path:
        return write_atomic(path, [self.model_dump_json(indent=1), "\n"])


def load_verifier(path: str | Path | None = None) -> VerifierArtifact:
    """Read and validate a verifier artifact (the shipped default when ``path`` is None)."""
    return read_model(Path(path) if path else DEFAULT_VERIFIER, FORMAT, VerifierArtifact, "verifier", "fit one with `tierroute calibrate`")
