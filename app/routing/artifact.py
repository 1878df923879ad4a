"""The calibration artifact: one versioned JSON file holding everything a router needs.

It records the embedding model it was built with (id, dimension, prefix), the
centroids (a reported signal), the scorer -- a gate that tells which kind of
traffic a prompt resembles and, per kind, an expert (length, logistic, topic or kNN)
calibrated to the probability that the prompt needs the large model --, the
hybrid LLM weight and band, the threshold with the traffic it was set on, and
how it was built (command, data checksums, nested and plain cross-validation). Arrays are stored as base64 little-endian float16/32.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.files import write_atomic
from app.validation import first_error

FORMAT = "tierroute.artifact"
VERSION = 2
DEFAULT_ARTIFACT = Path(__file__).parent / "artifacts" / "default.json"


class ArtifactError(ValueError):
    """An artifact that cannot be used; the message says why and what to do."""


class B64Array(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dtype: Literal["float16", "float32", "int8"]
    shape: list[int]
    data: str

    @classmethod
    def of(cls, a: np.ndarray, dtype: str = "float32") -> "B64Array":
        a = np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<"))
        return cls(dtype=dtype, shape=list(a.shape), data=base64.b64encode(a.tobytes()).decode())

    def array(self) -> np.ndarray:
        a = np.frombuffer(base64.b64decode(self.data), dtype=np.dtype(self.dtype).newbyteorder("<"))
        if a.size != int(np.prod(self.shape)):
            raise ArtifactError(f"array data holds {a.size} values, shape says {self.shape}")
        return a.reshape(self.shape).astype(np.float32)


class EmbedderInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_id: str
    dim: int = Field(gt=0)
    prefix: str = ""


class KnnParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    family: Literal["knn"] = "knn"
    k: int = Field(gt=0)
    temperature: float = Field(gt=0)
    length_weight: float
    length_mean: float
    length_std: float = Field(gt=0)
    reference: B64Array  # (n, dim) embeddings of this kind's calibration prompts
    labels: B64Array  # (n,) training labels in {0, 1}


class TopicParams(BaseModel):
    """Rates of the topics a prompt resembles (e.g. MMLU subjects), plus a length term."""

    model_config = ConfigDict(extra="forbid")
    family: Literal["topic"] = "topic"
    topics: list[str] = Field(min_length=2, description="the calibration rows' group (subject, category) of each topic")
    coef: B64Array  # (topics, dim): P(topic | prompt) = softmax(embedding @ coef.T + intercept)
    intercept: list[float]
    rates: list[float] = Field(description="each topic's smoothed share of prompts that needed the large model")
    length_weight: float
    length_mean: float
    length_std: float = Field(gt=0)

    @model_validator(mode="after")
    def _one_rate_per_topic(self):
        n = len(self.topics)
        if len(self.coef.shape) != 2 or not (len(self.intercept) == len(self.rates) == self.coef.shape[0] == n):
            raise ValueError(
                f"topics ({n}), intercept ({len(self.intercept)}), rates ({len(self.rates)}) and coef rows {self.coef.shape} must match"
            )
        if not all(0.0 < r < 1.0 for r in self.rates):
            raise ValueError("rates must lie strictly between 0 and 1")
        return self


class LogisticParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    family: Literal["logistic"] = "logistic"
    coef: list[float]
    intercept: float
    mean: list[float]
    scale: list[float]


class LengthParams(BaseModel):
    """The prompt-length rule (log words) as an expert: the simplest candidate."""

    model_config = ConfigDict(extra="forbid")
    family: Literal["length"] = "length"


class Expert(BaseModel):
    """The model of one kind of traffic and its calibration to a probability."""

    model_config = ConfigDict(extra="forbid")
    candidate: str = Field(description="the calibration candidate it was chosen as, e.g. 'knn k=100 length=0.5'")
    model: KnnParams | TopicParams | LogisticParams | LengthParams = Field(discriminator="family")
    platt: tuple[float, float] = Field(description="P(needs the large model) = sigmoid(a * raw + b)")
    outcomes: bool = Field(description="calibrated on weak/strong outcomes (else on simple/complex labels, scaled to label_prior)")


class Gate(BaseModel):
    """Multinomial logistic regression: which kind of traffic a prompt resembles."""

    model_config = ConfigDict(extra="forbid")
    kinds: list[str] = Field(min_length=2)
    coef: list[list[float]]  # (kinds, embedding dim + features)
    intercept: list[float]
    mean: list[float]
    scale: list[float]


MIXTURE = "mixture"  # score = sum over kinds of P(kind | prompt) * the kind's expert (artifacts before the field)
TOP_KIND = "top-kind"  # score = the expert of the kind the gate finds most likely


class KindsParams(BaseModel):
    """How the experts of the kinds of traffic make one score (``mixing``).

    ``mixture``: score = sum over kinds of P(kind | prompt) * P(needs the large model | prompt, kind); the gate's
    weights then also reorder prompts of one kind (a prompt that looks a little more like another kind moves).
    ``top-kind``: the score of the kind the gate finds most likely, so prompts the gate puts in one kind keep the
    order of that kind's expert. Artifacts written before the field read as ``mixture``.
    """

    model_config = ConfigDict(extra="forbid")
    family: Literal["kinds"] = "kinds"
    gate: Gate | None = Field(None, description="None when the artifact knows one kind of traffic")
    experts: dict[str, Expert] = Field(min_length=1)
    mixing: Literal["mixture", "top-kind"] = Field(MIXTURE, description="how the kinds' experts make one score (see the class)")

    @model_validator(mode="after")
    def _gate_matches_experts(self):
        kinds = self.gate.kinds if self.gate else []
        if self.gate is None and len(self.experts) != 1:
            raise ValueError("experts: more than one kind needs a gate")
        if self.gate is not None and sorted(kinds) != sorted(self.experts):
            raise ValueError(f"gate.kinds {kinds} and experts {sorted(self.experts)} differ")
        return self


class Hybrid(BaseModel):
    """When and how much the router LLM's rating moves the embedding score."""

    model_config = ConfigDict(extra="forbid")
    band: float = Field(0.10, ge=0, le=1, description="consult the LLM when |q(score) - q(threshold)| <= band")
    llm_weight: float = Field(0.5, ge=0, le=1, description="0: the LLM is never consulted (it added nothing)")
    llm_center: float = Field(0.5, ge=0, le=1)
    fitted: bool = Field(False, description="band, weight and centre fitted on outcomes (`calibrate --router-llm`); false: defaults")
    fit: dict[str, Any] = Field(
        default_factory=dict, description="how they were fitted: router LLM model, rows, cross-validated APGR with and without the LLM"
    )


class Artifact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["tierroute.artifact"] = FORMAT
    version: int = VERSION
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    embedder: EmbedderInfo
    centroids: dict[Literal["simple", "complex"], list[float]]
    scorer: KindsParams
    threshold: float = Field(ge=0, le=1, description="route to tier 2 when P(needs the large model) >= threshold")
    tier2_share: float = Field(ge=0, le=1, description="share of the operating-point traffic at or above threshold")
    score_quantiles: list[float] = Field(min_length=2, description="score quantiles 0..100% of the operating-point traffic")
    operating_point: dict[str, Any] = Field(
        default_factory=dict, description="the traffic the threshold was set on, and each source's tier-2 share there"
    )
    hybrid: Hybrid = Hybrid()
    build: dict[str, Any] = Field(default_factory=dict, description="command, data checksums, CV results")

    @field_validator("version")
    @classmethod
    def _supported(cls, v: int) -> int:
        if v != VERSION:
            raise ValueError(
                f"artifact version {v} is not supported by this tierroute (expects {VERSION}); rebuild it with `tierroute calibrate`"
            )
        return v

    def check_embedder(self, model_id: str, dim: int) -> None:
        if model_id != self.embedder.model_id or dim != self.embedder.dim:
            raise ArtifactError(
                f"artifact was built with embedding model {self.embedder.model_id!r} (dim {self.embedder.dim}) "
                f"but the router is using {model_id!r} (dim {dim}); re-run `tierroute calibrate` with "
                f"--embedding-model {model_id!r} or use the embedder the artifact names"
            )

    @property
    def pair(self) -> tuple[str, str] | None:
        """(tier 1, tier 2) model names whose outcomes calibrated this artifact (``build.pair``); None when unrecorded."""
        pair = self.build.get("pair") or {}
        return (pair["tier1"], pair["tier2"]) if pair.get("tier1") and pair.get("tier2") else None

    def serves_pair(self, tier1_source: str, tier2_source: str) -> bool | None:
        """Whether the served models look like the artifact's pair (:func:`model_key` of each contains the pair's);
        None when the artifact records no pair."""
        if self.pair is None:
            return None
        return all(model_key(want) in model_key(got) for want, got in zip(self.pair, (tier1_source, tier2_source)))

    def quantile_of(self, score: float | np.ndarray) -> np.ndarray:
        """Where ``score`` falls in calibration traffic, in [0, 1] (its ECDF value)."""
        q = np.asarray(self.score_quantiles)
        return np.interp(score, q, np.linspace(0, 1, len(q)))

    def save(self, path: str | Path) -> Path:
        """Write atomically: the file appears whole or not at all."""
        return write_atomic(path, [self.model_dump_json(indent=1), "\n"])


def model_key(name: str) -> str:
    """A model name reduced to what identifies its weights: the last path part, lower case, letters and digits only,
    without a leading "meta" or anything from "instruct" on (``hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4`` and
    ``meta-llama/Llama-3.1-8B-Instruct`` -> ``llama318b``)."""
    key = re.sub(r"[^a-z0-9]", "", name.rstrip("/").rsplit("/", 1)[-1].lower()).split("instruct", 1)[0]
    return key.removeprefix("meta")


def read_model(path: Path, fmt: str, model: type[BaseModel], noun: str, how: str) -> BaseModel:
    """``path``'s JSON of format ``fmt`` validated as ``model``; every failure an ArtifactError naming the
    file and, for an invalid one, the field (``noun``: what it is; ``how``: the command that makes one)."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{path}: no such {noun} ({how})") from None
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path}: not a JSON {noun} ({e.msg} at line {e.lineno})") from None
    if not isinstance(raw, dict) or raw.get("format") != fmt:
        raise ArtifactError(f"{path}: not a tierroute {noun} (missing format {fmt!r})")
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        where, msg = first_error(e)
        raise ArtifactError(f"{path}: invalid {noun} field {where!r}: {msg}") from None


def load_artifact(path: str | Path | None = None) -> Artifact:
    """Read and validate an artifact (the shipped default when ``path`` is None)."""
    return read_model(Path(path) if path else DEFAULT_ARTIFACT, FORMAT, Artifact, "artifact", "build one with `tierroute calibrate`")
