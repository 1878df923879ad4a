"""Typed configuration of the serving graph: one validated ``*Config`` model per block. No Ray here.

A Serve config file's ``applications[].args`` is parsed into :class:`AppConfig` by
:func:`app.serve.graph.build_app` (which turns these into Ray's objects); an invalid field fails
the deploy at once with a message naming it.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from app.routing.artifact import Artifact
from app.routing.controller import ControllerConfig
from app.routing.embed import EmbedderConfig, model_id
from app.serve.key_config import ApiKeyConfig, AuthConfig, KeyLimits  # noqa: F401  (re-exported: the keys' blocks)
from app.serve.routing_config import ProjectFile, RoutingConfig
from app.serve.tier_config import (  # noqa: F401  (re-exported: the tiers' blocks, from where they always were)
    CPU_ENGINE_ENV,
    PROJECT_ROOT,
    Autoscaling,
    EngineConfig,
    EngineTierConfig,
    Price,
    RemoteConfig,
    RemoteTierConfig,
    Resources,
    Strict,
    TierConfig,
    default_tier_name,
    is_remote,
    read_key,
    tier_config,
)
from app.validation import describe, first_error

logger = logging.getLogger("tierroute.config")

class RouterLLMConfig(EngineConfig):
    enabled: bool = True
    timeout_s: float = Field(2.0, gt=0, description="past this the decision falls back to the embedding score")


class EmbedderServeConfig(EmbedderConfig):
    """The embedder of the graph: the model's fields (:class:`app.routing.embed.EmbedderConfig`: model,
    prefix, device, backend, precision, num_threads, ...) beside how it is served.

    The old shape, the model's fields in a nested ``embedder:`` block, still loads, with a deprecation warning.
    """

    colocate: bool = Field(
        False,
        description="run the model inside the ingress replica instead of its own deployment: one Serve hop "
        "fewer per request, for CPU-only machines; a GPU embedder wants its own deployment",
    )
    timeout_s: float = Field(
        5.0, gt=0, description="an Embedder deployment that has not answered by then counts as down: the request goes to ingress.degraded_tier"
    )
    max_batch_size: int = Field(32, ge=1, le=256)
    batch_wait_timeout_s: float = Field(
        0.0, ge=0, description="how long a batch waits to fill; only under load (a request alone in the ingress is not batched)"
    )
    replica: Resources = Resources(num_cpus=0.25, max_ongoing_requests=64, access_log=False)

    @model_validator(mode="before")
    @classmethod
    def _nested_model_fields(cls, data: Any) -> Any:
        """``embedder: {embedder: {model: ...}}`` (before the rename) -> ``embedder: {model: ...}``."""
        if not isinstance(data, dict) or not isinstance(data.get("embedder"), dict):
            return data
        message = f"config: `embedder.embedder` is deprecated: its fields {sorted(data['embedder'])} moved up (embedder.embedder.model -> embedder.model)"
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        logger.warning(message)
        nested, rest = data["embedder"], {k: v for k, v in data.items() if k != "embedder"}
        both = sorted(set(nested) & set(rest))
        if both:
            raise ValueError(f"embedder.embedder: {both} set both here and one level up")
        return {**rest, **nested}

    def embedding_model(self) -> EmbedderConfig:
        """The embedding model's own config (what :class:`app.routing.embed.Embedder` loads)."""
        return EmbedderConfig(**{f: getattr(self, f) for f in EmbedderConfig.model_fields})

    @model_validator(mode="after")
    def _batch_fits(self):
        if self.replica.max_ongoing_requests < self.max_batch_size:
            raise ValueError("replica.max_ongoing_requests must be >= max_batch_size, or batches never fill")
        return self


class IngressConfig(Strict):
    router_name: str = Field("auto", min_length=1, description="the 'model' value that asks for routing")
    max_body_bytes: int = Field(1 << 20, ge=1024)
    max_json_depth: int = Field(32, ge=4, le=1000, description="deepest nesting of arrays and objects a body may have")
    max_messages: int = Field(512, ge=1, description="messages per chat request")
    max_concurrent_requests: int = Field(
        200, ge=1, description="requests one ingress replica works on at once; past it: 429 with Retry-After (keep below replica.max_ongoing_requests)"
    )
    request_timeout_s: float = Field(
        300.0, gt=0, description="deadline of a request (header x-tierroute-timeout may lower it); past it: 504 and the engine request is aborted"
    )
    retry_after_s: int = Field(2, ge=1, description="Retry-After of 429 and 503 answers")
    degraded_tier: int = Field(1, ge=1, description="the tier (1 = the cheapest) requests go to when the embedder fails")
    log_decisions: bool = Field(True, description="one JSON line per decision in the ingress log (logger tierroute.decisions)")
    log_prompts: bool = Field(False, description="include the scored text in decision lines (off: no prompt text in logs)")
    grpc_calls: bool = Field(
        True,
        description="call the tiers, router LLM and embedder over Ray Serve's gRPC transport (by value) instead "
        "of Ray actor calls: about half the CPU and latency per hop",
    )
    replica: Resources = Resources(num_cpus=0.25, max_ongoing_requests=256)

    @model_validator(mode="after")
    def _own_limit_first(self):
        if self.max_concurrent_requests >= self.replica.max_ongoing_requests:
            raise ValueError(
                "max_concurrent_requests must be below replica.max_ongoing_requests, so the ingress answers 429 "
                "in OpenAI's shape before Serve queues or drops requests itself"
            )
        return self


class FallbackConfig(Strict):
    """What happens when a tier errors, times out, is overloaded or has no healthy replica: the request walks
    the ladder, down first (the cheaper tiers, nearest first), then up where ``up`` is on (:mod:`app.serve.fallback`).

    ``tier2_to_tier1``/``tier1_to_tier2`` (before ladders) still load, as ``down``/``up``, with a deprecation warning.
    """

    down: bool = Field(True, description="a failed request is served by a cheaper tier (the nearest one that answers)")
    up: bool = Field(False, description="then, by a stronger tier (the nearest one that answers; costs more)")
    tier_timeout_s: float = Field(
        60.0, gt=0, description="a tier that has not answered (a stream: sent its first chunk) by then counts as failed"
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for old, new in (("tier2_to_tier1", "down"), ("tier1_to_tier2", "up")):
            if old in data:
                if new in data:
                    raise ValueError(f"{old} is the old name of {new}: set only {new}")
                message = f"config: `fallback.{old}` is deprecated: it is `fallback.{new}` (a ladder of tiers falls back {new})"
                warnings.warn(message, DeprecationWarning, stacklevel=2)
                logger.warning(message)
                data[new] = data.pop(old)
        return data


class MetricsConfig(Strict):
    enabled: bool = Field(True, description="Prometheus metrics through ray.serve.metrics")
    tier1_price: Price = Field(Price(input_per_mtok=0.10, output_per_mtok=0.10), description="the cheapest tier's price, unless the tier sets its own")
    tier2_price: Price = Field(Price(input_per_mtok=0.90, output_per_mtok=0.90), description="the other tiers' price, unless a tier sets its own")


class ShadowConfig(Strict):
    """Optional shadow evaluation: a sampled share of routed requests also answered by the other tier and judged, off the response path."""

    enabled: bool = Field(False, description="off by default: it costs tier capacity and writes prompts to the outcomes log")
    sample_rate: float = Field(0.01, gt=0, le=1, description="share of routed chat requests shadowed")
    judge_model: str | None = Field(None, description="model id of the judge: one of the tiers' (default tier 2's)")
    max_tokens: int = Field(256, ge=1, description="of the other tier's answer; requests whose answer was longer are not shadowed")
    tokens_per_hour: int = Field(200_000, ge=1, description="cap on shadow tokens (other answer + judge) per ingress replica per hour")
    max_in_flight: int = Field(4, ge=1, description="shadow jobs at once per ingress replica; more are skipped")
    timeout_s: float = Field(120.0, gt=0, description="a shadow job not done by then is dropped")
    outcomes_path: str = Field(
        "shadow/outcomes.jsonl", min_length=1, validate_default=True, description="outcome rows (calibrate format); each ingress replica writes <stem>-<replica>.jsonl"
    )
    max_bytes: int = Field(50 << 20, ge=1024, description="rotate an outcomes file at this size")
    backups: int = Field(5, ge=1, description="rotated files kept per replica")

    @field_validator("outcomes_path")
    @classmethod
    def _jsonl(cls, v: str) -> str:
        p = Path(v)
        if p.suffix != ".jsonl":
            raise ValueError(f"outcomes_path {v!r}: must end in .jsonl")
        return str(p if p.is_absolute() else PROJECT_ROOT / p)


class AppConfig(Strict):
    """Arguments of ``app.serve.graph:build_app``."""

    artifact: ProjectFile = Field(None, description="calibration artifact; default: the shipped one")
    routing: RoutingConfig = Field(RoutingConfig(), description="route before generation, or cascade (docs/cascade.md)")
    ingress: IngressConfig = IngressConfig()
    embedder: EmbedderServeConfig = EmbedderServeConfig()
    router_llm: RouterLLMConfig | None = None
    tier1: TierConfig | None = Field(None, description="a vLLM engine's fields, or a remote tier: {model_id, remote: {...}} (docs/remote-tiers.md)")
    tier2: TierConfig | None = Field(None, description="a vLLM engine's fields, or a remote tier: {model_id, remote: {...}} (docs/remote-tiers.md)")
    tiers: list[TierConfig] | None = Field(
        None, min_length=2, description="instead of tier1/tier2: a ladder of tiers, cheapest first, each a tier block with an optional "
        "name and price (docs/ladder.md)"
    )
    fallback: FallbackConfig = FallbackConfig()
    auth: AuthConfig = AuthConfig()
    metrics: MetricsConfig = MetricsConfig()
    controller: ControllerConfig = Field(
        ControllerConfig(), description="optional: hold a target tier-2 share on live traffic (off: the artifact's threshold)"
    )
    shadow: ShadowConfig = Field(ShadowConfig(), description="optional: judge a sampled share of routed requests against the other tier")

    @field_validator("tier1", "tier2", mode="before")
    @classmethod
    def _tier_kind(cls, v: Any) -> Any:
        return tier_config(v)  # its errors keep their place (tier2.remote.base_url)

    @field_validator("tiers", mode="before")
    @classmethod
    def _tiers_kind(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        out = []
        for k, t in enumerate(v):
            try:
                out.append(tier_config(t))
            except ValidationError as e:  # its place in the list kept: tiers[1].remote.base_url
                loc, msg = first_error(e)
                raise ValueError(f"tiers[{k}].{loc}: {msg}") from None
        return out

    @property
    def ladder(self) -> list["Rung"]:
        """The tiers, cheapest first, each with its index (from 1), name and price: ``tiers``, or ``tier1`` and ``tier2``."""
        specs = self.tiers if self.tiers is not None else [self.tier1, self.tier2]
        m = self.metrics
        return [
            Rung(k, spec.name or default_tier_name(k), spec, spec.price or (m.tier1_price if k == 1 else m.tier2_price))
            for k, spec in enumerate(specs, start=1)
        ]

    @property
    def top(self) -> int:
        """The index of the strongest tier (2 for a pair)."""
        return len(self.tiers) if self.tiers is not None else 2

    def with_artifact_embedder(self, artifact: Artifact) -> "AppConfig":
        """This config with the embedding model and prefix ``artifact`` was calibrated with.

        ``embedder.model``/``prefix`` left out are taken from the artifact; set to anything
        else, they are an error naming both models: another model's embeddings scored against the
        artifact's would mis-route silently (same dimension) or fail on the first request (another one).
        """
        e, want = self.embedder, artifact.embedder
        where = f"artifact {self.artifact or 'shipped default'}"
        if "model" in e.model_fields_set and model_id(e.model) != want.model_id:
            raise ValueError(
                f"embedder.model: {e.model!r} is not the embedding model the {where} was calibrated with "
                f"({want.model_id!r}); serve {want.model_id!r} (or leave the field out), or calibrate an artifact "
                f"with `tierroute calibrate --embedding-model {e.model}`"
            )
        if "prefix" in e.model_fields_set and e.prefix != want.prefix:
            raise ValueError(
                f"embedder.prefix: {e.prefix!r} is not the prefix the {where} was calibrated with "
                f"({want.prefix!r}) for {want.model_id!r}; leave the field out to use the artifact's"
            )
        return self.model_copy(update={"embedder": e.model_copy(update={"model": want.model_id, "prefix": want.prefix})})

    @model_validator(mode="after")
    def _one_shape(self):
        pair = (self.tier1 is not None, self.tier2 is not None)
        if self.tiers is not None and any(pair):
            raise ValueError("tiers: set either tiers (a ladder) or tier1 and tier2, not both")
        if self.tiers is None and not all(pair):
            missing = [f for f, ok in zip(("tier1", "tier2"), pair) if not ok]
            raise ValueError(f"{' and '.join(missing)}: required (or list the tiers, cheapest first, in tiers)")
        return self

    @model_validator(mode="after")
    def _distinct_names(self):
        ids = [r.spec.model_id for r in self.ladder]
        names = [self.ingress.router_name, *ids]
        if len(set(names)) != len(names):
            where = "tiers[].model_id" if self.tiers is not None else "tier1.model_id and tier2.model_id"
            raise ValueError(f"ingress.router_name and {where} must differ, got {names}")
        tier_names = [r.name for r in self.ladder]
        if len(set(tier_names)) != len(tier_names):
            raise ValueError(f"tiers[].name: the tiers' names must differ, got {tier_names}")
        judge = self.shadow.judge_model
        if judge is not None and judge not in ids:
            raise ValueError(f"shadow.judge_model {judge!r}: must be one of the tiers' model ids {ids}")
        return self

    @model_validator(mode="after")
    def _ladder_fits(self):
        """What a ladder of three or more tiers needs, and what it does not serve yet."""
        n = self.top
        if self.router_llm is not None and self.router_llm.enabled and self.routing.ladder is not None:
            raise ValueError("router_llm: a ladder (routing.ladder) does not consult the router LLM; remove the block or set enabled: false")
        if self.ingress.degraded_tier > n:
            raise ValueError(f"ingress.degraded_tier: {self.ingress.degraded_tier}, but there are {n} tiers")
        if n == 2 and self.routing.ladder is not None and self.routing.mode != "route":
            raise ValueError("routing.ladder: a pair's cascade reads the verifier (routing.cascade.verifier); a ladder artifact serves a pair in mode route")
        if n > 2:
            if self.routing.mode == "cascade_routing":
                raise ValueError(f"routing.mode: 'cascade_routing' serves two tiers; a ladder of {n} tiers is routed (route) or climbed (cascade)")
            if self.routing.ladder is None:
                raise ValueError(
                    f"routing.ladder: a ladder of {n} tiers needs a ladder artifact (`tierroute calibrate --ladder ... "
                    f"--ladder-mode {self.routing.mode}`)"
                )
            if self.routing.mode == "cascade" and self.routing.cascade.stream == "early":
                raise ValueError("routing.cascade.stream: a ladder's climb buffers each answer (stream: buffer)")
            if self.routing.mode == "cascade" and self.controller.enabled:
                raise ValueError("controller.enabled: the share controller holds a routed ladder's shares (mode: route), not a climb's")
            if self.shadow.enabled:
                raise ValueError(f"shadow.enabled: shadow evaluation compares two tiers; this config has {n}")
        shares = self.controller.target_shares
        if shares is not None and self.routing.ladder is None:
            raise ValueError("controller.target_shares: holds a ladder's share per tier (routing.ladder); without one, set target_tier2_share")
        if shares is not None and len(shares) != n:
            raise ValueError(f"controller.target_shares: {len(shares)} shares for {n} tiers")
        if self.controller.enabled and self.routing.ladder is not None and shares is None:
            raise ValueError("controller.target_shares: a ladder's controller holds a share per tier (cheapest first, summing to 1)")
        return self


@dataclass(frozen=True)
class Rung:
    """One tier of :attr:`AppConfig.ladder`: its index (1 = the cheapest), name, block and price."""

    index: int
    name: str
    spec: TierConfig
    price: Price

