"""The ladder artifact: one versioned JSON file, what ``tierroute calibrate --ladder`` writes and a replica reads.

It names the tiers, cheapest first (model, price per 1M input/output tokens), the mode (``cascade``: each
boundary's model reads tier k's answer; ``route``: it reads the prompt before generation) and, per
boundary k between tier k and the tiers above, a calibrated P(tier k is not enough: a tier above does
better) and a threshold: tier k is judged sufficient iff the probability is below it, and a request ends
at the lowest tier judged sufficient (:func:`app.routing.ladder.final_tier`; a route-mode ladder is served by
:class:`app.routing.ladder.LadderRouter`). ``card``: the tiers and models, how the thresholds were set, and
the shares, quality and cost they gave on the calibration rows (out-of-fold scores). Old two-tier artifacts
are untouched: this is a separate format. Serve-time: no import of app.calibration (it re-exports these).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.files import write_atomic
from app.routing.artifact import ArtifactError, EmbedderInfo, read_model
from app.routing.logit import Logit, probability

FORMAT = "tierroute.ladder"
VERSION = 1
DEFAULT_LADDER = Path(__file__).parent / "artifacts" / "ladder.json"


class Price(BaseModel):
    """What a tier's model costs (:mod:`app.calibration.ladder_prices` holds the defaults and the per-prompt costs)."""

    input: float = Field(ge=0, description="USD per 1M input tokens")
    output: float = Field(ge=0, description="USD per 1M output tokens")


class Tier(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, description="the tier's name, e.g. tier1")
    model: str = Field(min_length=1, description="the model id (the score column it was calibrated on)")
    price: Price


class Boundary(BaseModel):
    """P(tier ``tier`` is not enough) = sigmoid over the input row (``features`` in order, then the embedding)."""

    model_config = ConfigDict(extra="forbid")
    tier: str = Field(description="the model whose sufficiency it judges")
    above: list[str] = Field(min_length=1, description="the models above it (the label: one of them scores higher)")
    reads: Literal["answer", "prompt"] = Field(description="answer: tier k's answer (verifier features); prompt: the prompt")
    candidate: str
    features: list[str]
    embedding: bool = Field(False, description="the prompt's embedding follows the features in the input row")
    form: Literal["needs_strong", "product"] = "needs_strong"
    model: Logit
    strong: Logit | None = None
    threshold: float = Field(description="tier k is sufficient iff the probability is below it (-1: always escalate, 2: never)")

    @model_validator(mode="after")
    def _shape(self):
        if not self.embedding and len(self.model.coef) != len(self.features):
            raise ValueError(f"{len(self.features)} features but {len(self.model.coef)} coefficients")
        if (self.form == "product") != (self.strong is not None):
            raise ValueError("strong: required by form 'product', and only by it")
        return self

    def probability(self, x: np.ndarray) -> np.ndarray:
        p = probability(self.model, x)
        return p * probability(self.strong, x) if self.strong is not None else p


class LadderArtifact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["tierroute.ladder"] = FORMAT
    version: int = VERSION
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    mode: Literal["cascade", "route"]
    tiers: list[Tier] = Field(min_length=2, description="cheapest first")
    boundaries: list[Boundary]
    embedder: EmbedderInfo | None = Field(None, description="the embedding model (route mode)")
    card: dict[str, Any] = Field(default_factory=dict)

    @field_validator("version")
    @classmethod
    def _supported(cls, v: int) -> int:
        if v != VERSION:
            raise ValueError(f"ladder version {v} is not supported (expects {VERSION}); refit it with `tierroute calibrate --ladder`")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        models = [t.model for t in self.tiers]
        if len(set(models)) != len(models):
            raise ValueError(f"tiers: a model appears twice ({models})")
        if len(self.boundaries) != len(self.tiers) - 1:
            raise ValueError(f"boundaries: {len(self.tiers)} tiers need {len(self.tiers) - 1} boundaries, got {len(self.boundaries)}")
        for k, b in enumerate(self.boundaries):
            if b.tier != models[k] or b.above != models[k + 1 :]:
                raise ValueError(f"boundaries[{k}]: judges {b.tier} against {b.above}, expected {models[k]} against {models[k + 1:]}")
            if b.reads != ("answer" if self.mode == "cascade" else "prompt"):
                raise ValueError(f"boundaries[{k}].reads: {b.reads!r} does not fit mode {self.mode!r}")
        if any(b.embedding for b in self.boundaries) and self.embedder is None:
            raise ValueError("embedder: a boundary uses embeddings, so the artifact must name its embedder")
        return self

    @property
    def thresholds(self) -> np.ndarray:
        return np.array([b.threshold for b in self.boundaries], dtype=float)

    def require_mode(self, mode: str) -> None:
        """An ArtifactError naming the field unless this ladder was fitted for ``mode`` (route: it reads the prompt
        before generation; cascade: each tier's answer)."""
        if self.mode != mode:
            reads = {"route": "the prompt before generation", "cascade": "each tier's answer"}
            raise ArtifactError(
                f"ladder artifact field 'mode': {self.mode!r} reads {reads[self.mode]}; this needs one that reads {reads[mode]} "
                f"(fit one with `tierroute calibrate --ladder ... --ladder-mode {mode}`)"
            )

    def save(self, path: str | Path) -> Path:
        return write_atomic(path, [self.model_dump_json(indent=1), "\n"])


def load_ladder_artifact(path: str | Path | None = None) -> LadderArtifact:
    """Read and validate a ladder artifact (the shipped route-mode one when ``path`` is None); an error names the field."""
    return read_model(Path(path) if path else DEFAULT_LADDER, FORMAT, LadderArtifact, "ladder artifact", "fit one with `tierroute calibrate --ladder`")
