"""Typed configuration of the serving graph: one validated ``*Config`` model per block. No Ray here.

A Serve config file's ``applications[].args`` is parsed into :class:`AppConfig` by
:func:`app.serve.graph.build_app` (which turns these into Ray's objects); an invalid field fails
the deploy at once with a message naming it.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from app.routing.artifact import Artifact
from app.routing.controller import ControllerConfig
from app.routing.embed import EmbedderConfig, model_id
from app.serve.routing_config import RoutingConfig, project_file
from app.serve.tier_config import (  # noqa: F401  (re-exported: the tiers' blocks, from where they always were)
    CPU_ENGINE_ENV,
    PROJECT_ROOT,
    Autoscaling,
    EngineConfig,
    RemoteConfig,
    RemoteTierConfig,
    Resources,
    Strict,
    TierConfig,
    is_remote,
    read_key,
    tier_config,
)
from app.validation import describe

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
    degraded_tier: Literal[1, 2] = Field(1, description="where requests go when the embedder fails")
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
    """What happens when a tier errors, times out, is overloaded or has no healthy replica."""

    tier2_to_tier1: bool = Field(True, description="a failed tier-2 request is served by tier 1")
    tier1_to_tier2: bool = Field(False, description="a failed tier-1 request is served by tier 2 (costs more)")
    tier_timeout_s: float = Field(
        60.0, gt=0, description="a tier that has not answered (a stream: sent its first chunk) by then counts as failed"
    )


class Price(Strict):
    """Price of one tier per million tokens (any currency; used for cost and savings metrics)."""

    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)


class MetricsConfig(Strict):
    enabled: bool = Field(True, description="Prometheus metrics through ray.serve.metrics")
    tier1_price: Price = Price(input_per_mtok=0.10, output_per_mtok=0.10)
    tier2_price: Price = Price(input_per_mtok=0.90, output_per_mtok=0.90)


class KeyLimits(Strict):
    """Limits of one API key (per ingress replica: N replicas allow up to N times these)."""

    requests_per_minute: int | None = Field(None, ge=1)
    max_tier2_share: float | None = Field(
        None, ge=0, le=1, description="past this share of its recent routed requests on tier 2, a key's requests go to tier 1"
    )
    tier2_window: int = Field(100, ge=10, description="recent routed requests the tier-2 share is measured over")


class ApiKeyConfig(KeyLimits):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._:-]+$")
    key: str = Field(min_length=16, repr=False)


class AuthConfig(Strict):
    """Optional API keys. Keys come from an environment variable and/or a file, never from this config."""

    keys_env: str | None = Field(
        None, description="environment variable holding a JSON list of {name, key, ...limits} or 'name:key,name:key'"
    )
    keys_file: str | None = Field(None, description="JSON file: a list of {name, key, requests_per_minute?, max_tier2_share?}")
    default_limits: KeyLimits = Field(KeyLimits(), description="limits of keys that set none of their own")

    @property
    def enabled(self) -> bool:
        return bool(self.keys_env or self.keys_file)


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
        "shadow/outcomes.jsonl", min_length=1, description="outcome rows (calibrate format); each ingress replica writes <stem>-<replica>.jsonl"
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

    artifact: str | None = Field(None, description="calibration artifact; default: the shipped one")
    routing: RoutingConfig = Field(RoutingConfig(), description="route before generation, or cascade (docs/cascade.md)")
    ingress: IngressConfig = IngressConfig()
    embedder: EmbedderServeConfig = EmbedderServeConfig()
    router_llm: RouterLLMConfig | None = None
    tier1: TierConfig = Field(description="a vLLM engine's fields, or a remote tier: {model_id, remote: {...}} (docs/remote-tiers.md)")
    tier2: TierConfig = Field(description="a vLLM engine's fields, or a remote tier: {model_id, remote: {...}} (docs/remote-tiers.md)")
    fallback: FallbackConfig = FallbackConfig()
    auth: AuthConfig = AuthConfig()
    metrics: MetricsConfig = MetricsConfig()
    controller: ControllerConfig = Field(
        ControllerConfig(), description="optional: hold a target tier-2 share on live traffic (off: the artifact's threshold)"
    )
    shadow: ShadowConfig = Field(ShadowConfig(), description="optional: judge a sampled share of routed requests against the other tier")

    @field_validator("artifact")
    @classmethod
    def _artifact(cls, v: str | None) -> str | None:
        return project_file(v, "artifact")

    @field_validator("tier1", "tier2", mode="before")
    @classmethod
    def _tier_kind(cls, v: Any) -> Any:
        return tier_config(v)  # its errors keep their place (tier2.remote.base_url)

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
    def _distinct_names(self):
        names = [self.ingress.router_name, self.tier1.model_id, self.tier2.model_id]
        if len(set(names)) != len(names):
            raise ValueError(f"ingress.router_name, tier1.model_id and tier2.model_id must differ, got {names}")
        judge = self.shadow.judge_model
        if judge is not None and judge not in names[1:]:
            raise ValueError(f"shadow.judge_model {judge!r}: must be one of the tiers' model ids {names[1:]}")
        return self

