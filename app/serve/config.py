"""Typed configuration of the serving graph: one validated ``*Config`` model per block. No Ray here.

A Serve config file's ``applications[].args`` is parsed into :class:`AppConfig` by
:func:`app.serve.graph.build_app` (which turns these into Ray's objects); an invalid field fails
the deploy at once with a message naming it.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.routing.artifact import Artifact
from app.routing.controller import ControllerConfig
from app.routing.embed import EmbedderConfig, model_id
from app.serve.routing_config import RoutingConfig, project_file
from app.validation import describe

logger = logging.getLogger("tierroute.config")

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Environment every vLLM engine needs on a CPU (see docs/serving.md).
CPU_ENGINE_ENV = {
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",  # default pins every engine to core 0
    "TORCHDYNAMO_DISABLE": "1",  # else the first logprobs request compiles for ~17 s
    "VLLM_NO_USAGE_STATS": "1",
    "HF_HUB_OFFLINE": "1",
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Autoscaling(Strict):
    """The part of Ray Serve's ``AutoscalingConfig`` a deployment here sets (Ray's own model validates it
    again where the graph is built: :func:`app.serve.graph.app_config`)."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float = Field(4, gt=0)

    def options(self) -> dict[str, Any]:
        """The fields of Ray's ``AutoscalingConfig``; a deployment starts with ``max(min_replicas, 1)`` replicas."""
        return {
            "min_replicas": self.min_replicas,
            "initial_replicas": max(self.min_replicas, 1),
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
        }

    @model_validator(mode="after")
    def _min_below_max(self):
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) must be <= max_replicas ({self.max_replicas})")
        return self


class Resources(Strict):
    """Ray resources of one replica."""

    num_cpus: float = Field(0.25, ge=0)
    num_gpus: float = Field(0, ge=0)
    max_ongoing_requests: int = Field(64, ge=1)
    max_queued_requests: int = Field(
        -1, ge=-1, description="requests a caller may queue for this deployment beyond max_ongoing_requests per replica; -1: no bound"
    )
    autoscaling: Autoscaling = Autoscaling()
    access_log: bool = Field(True, description="Serve's per-request access log of this deployment")

    def deployment_options(self) -> dict[str, Any]:
        """Ray Serve deployment options for these resources: the one builder for every deployment here."""
        return {
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
            "logging_config": {"enable_access_log": self.access_log},
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "autoscaling_config": self.autoscaling.options(),
        }


class EngineConfig(Strict):
    """One vLLM engine served through Ray Serve LLM (tier 1, tier 2 or the router LLM)."""

    model_id: str = Field(min_length=1, description="the name clients use in 'model'")
    model_source: str = Field(min_length=1, description="HF model id or local directory (relative: to the project root)")
    accelerator: Literal["cpu", "L40S", "L4", "A10G", "A100", "H100"] = "cpu"
    tensor_parallel_size: int = Field(1, ge=1)
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="passed to vLLM (max_model_len, quantization, ...)")
    bundle_cpus: float = Field(0.25, gt=0, description="CPUs of each placement bundle (one bundle per GPU on GPU)")
    bundle_gpus: float = Field(1.0, gt=0, le=1, description="GPU share of each bundle: < 1 shares a GPU (set gpu_memory_utilization to match)")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment of the engine")
    replica: Resources = Resources(num_cpus=0.25, max_ongoing_requests=64)

    @field_validator("model_source")
    @classmethod
    def _resolve(cls, v: str) -> str:
        """Local paths become absolute and must exist; anything else is a hub id."""
        p = Path(v)
        if not p.is_absolute() and (PROJECT_ROOT / p).exists():
            return str(PROJECT_ROOT / p)
        if (p.is_absolute() or v.startswith(".") or v.startswith("models/")) and not p.exists():
            raise ValueError(f"model_source {v!r}: no such directory (`make setup` generates the local models)")
        return v

    @model_validator(mode="after")
    def _cpu_needs(self):
        if self.accelerator == "cpu":
            missing = {"enforce_eager", "max_model_len"} - set(self.engine_kwargs)
            if missing:
                raise ValueError(f"engine_kwargs: a CPU engine needs {sorted(missing)} set (see README)")
            if self.tensor_parallel_size != 1:
                raise ValueError("tensor_parallel_size: must be 1 on CPU")
        elif self.bundle_gpus < 1 and self.tensor_parallel_size > 1:
            raise ValueError("bundle_gpus: a fractional GPU share needs tensor_parallel_size 1")
        return self

    def bundles(self) -> list[dict[str, float]]:
        """Placement bundles of one replica: one per tensor-parallel rank."""
        if self.accelerator == "cpu":
            return [{"CPU": self.bundle_cpus}]
        return [{"CPU": self.bundle_cpus, "GPU": self.bundle_gpus}] * self.tensor_parallel_size


class RemoteConfig(Strict):
    """Where a remote tier's requests go: an OpenAI-compatible endpoint (``<base_url>/chat/completions``, ``/completions``).

    The API key is named here, never written here: ``api_key_env`` (an environment variable of the replica) or
    ``api_key_file`` (a file the replica reads). It is read inside the RemoteTier replica when it starts, so it
    is never in the Serve config, the deployment's arguments, logs or any response (docs/remote-tiers.md).
    """

    base_url: str = Field(min_length=1, description="e.g. https://api.openai.com/v1 (the part before /chat/completions)")
    model: str = Field(min_length=1, description="the remote's name of the model (the tier's model_id is what clients see)")
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="environment variable holding the API key")
    api_key_file: str | None = Field(None, min_length=1, description="file holding the API key (relative: to the project root)")
    timeout_s: float = Field(60.0, gt=0, description="a request (a stream: until its first chunk, then between chunks) not answered by then fails")
    connect_timeout_s: float = Field(5.0, gt=0, description="connecting to the endpoint")
    max_in_flight: int = Field(64, ge=1, description="requests one replica has open at the endpoint at once; more wait their turn")
    max_retry_after_s: float = Field(60.0, gt=0, description="longest Retry-After of the endpoint's 429 honoured (the tier refuses fast meanwhile)")

    @field_validator("base_url")
    @classmethod
    def _http(cls, v: str) -> str:
        u = urlsplit(v)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"base_url {v!r}: must be an http:// or https:// URL")
        if u.username or u.password or u.query or u.fragment:
            raise ValueError("base_url: no credentials, query or fragment (the key goes in api_key_env or api_key_file)")
        return v.rstrip("/")

    @field_validator("api_key_file")
    @classmethod
    def _key_path(cls, v: str | None) -> str | None:
        if v is None:
            return None
        p = Path(v)
        return str(p if p.is_absolute() else PROJECT_ROOT / p)

    @model_validator(mode="after")
    def _one_key_source(self):
        if self.api_key_env and self.api_key_file:
            raise ValueError("api_key_env and api_key_file: set one of them (or neither, for an endpoint without keys)")
        return self

    def key_source(self) -> str | None:
        """The field that names the key (for messages), or None when the endpoint takes no key."""
        return "api_key_env" if self.api_key_env else "api_key_file" if self.api_key_file else None

    def check_key_source(self) -> None:
        """A ValueError naming the field when the key source is missing or empty here (the deploy's check;
        the replica reads the key again when it starts). The message never holds the key."""
        read_key(self)


def read_key(remote: RemoteConfig) -> str | None:
    """The API key ``remote`` names (None when it names none); a ValueError naming the field when it is missing or empty."""
    if remote.api_key_env:
        key = os.environ.get(remote.api_key_env, "").strip()
        if not key:
            raise ValueError(f"remote.api_key_env: environment variable {remote.api_key_env} is not set or empty")
        return key
    if remote.api_key_file:
        try:
            key = Path(remote.api_key_file).read_text().strip()
        except OSError:
            raise ValueError(f"remote.api_key_file: cannot read {remote.api_key_file}") from None
        if not key:
            raise ValueError(f"remote.api_key_file: {remote.api_key_file} is empty")
        return key
    return None


ENGINE_ONLY = frozenset(EngineConfig.model_fields) - {"model_id", "replica"}


class RemoteTierConfig(Strict):
    """A tier served by a remote OpenAI-compatible endpoint (:mod:`app.serve.remote`) instead of a vLLM engine."""

    model_id: str = Field(min_length=1, description="the name clients use in 'model'")
    remote: RemoteConfig
    replica: Resources = Resources(num_cpus=0.05, max_ongoing_requests=128)

    @model_validator(mode="before")
    @classmethod
    def _not_both(cls, data: Any) -> Any:
        if isinstance(data, dict):
            both = sorted(ENGINE_ONLY & set(data))
            if both:
                raise ValueError(f"a remote tier has no engine fields ({', '.join(both)}): set either remote or the engine's fields")
        return data

    @model_validator(mode="after")
    def _no_gpu(self):
        if self.replica.num_gpus:
            raise ValueError("replica.num_gpus: a remote tier runs on CPU (it only forwards requests)")
        if self.replica.max_ongoing_requests < self.remote.max_in_flight:
            raise ValueError("replica.max_ongoing_requests must be >= remote.max_in_flight, or remote.max_in_flight is never reached")
        return self


TierConfig = EngineConfig | RemoteTierConfig  # one tier: a vLLM engine in the graph, or a remote endpoint


def tier_config(v: Any) -> Any:
    """A tier's block as its kind: a remote tier has a ``remote`` block, an engine does not."""
    if isinstance(v, dict):
        return (RemoteTierConfig if "remote" in v else EngineConfig).model_validate(v)
    return v


def is_remote(tier: TierConfig) -> bool:
    return isinstance(tier, RemoteTierConfig)


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

