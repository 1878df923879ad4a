"""What a tier is, without Ray: a replica's resources, a vLLM engine (:class:`EngineTierConfig`) or a remote
OpenAI-compatible endpoint (:class:`RemoteTierConfig`), its name and price, and the remote key's one reader
(:func:`read_key`).

:mod:`app.serve.config` assembles these into the application's config (and re-exports them); a tier's block is
either kind (:data:`TierConfig`, told apart by :func:`tier_config`), whether it is ``tier1``/``tier2`` or an
entry of the ``tiers:`` list (a ladder, docs/ladder.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Environment every vLLM engine needs on a CPU (see docs/serving.md).
CPU_ENGINE_ENV = {
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",  # default pins every engine to core 0
    "TORCHDYNAMO_DISABLE": "1",  # else the first logprobs request compiles for ~17 s
    "VLLM_NO_USAGE_STATS": "1",
    "HF_HUB_OFFLINE": "1",
}


TIER_NAME = r"^[A-Za-z0-9._-]+$"  # a tier's name: in headers, metric tags, deployment names and per-key caps


def default_tier_name(k: int) -> str:
    """The name of tier ``k`` (1 = the cheapest) that sets none."""
    return f"tier{k}"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Price(Strict):
    """Price of one tier per million tokens (any currency; used for cost and savings metrics)."""

    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)


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


class Named(Strict):
    """What every tier has beside how it is served: a name and a price (both optional)."""

    name: str | None = Field(
        None, pattern=TIER_NAME, description="the tier's name in x-tierroute-tier, /v1/models and per-key caps; default tier<k> (k from 1, cheapest first)"
    )
    price: Price | None = Field(
        None, description="per 1M tokens, for the cost and savings metrics; default metrics.tier1_price for the cheapest tier, metrics.tier2_price for the others"
    )


class EngineTierConfig(EngineConfig, Named):
    """A tier served by a vLLM engine in the graph (Ray Serve LLM)."""


ENGINE_ONLY = frozenset(EngineConfig.model_fields) - {"model_id", "replica"}


class RemoteTierConfig(Named):
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


TierConfig = EngineTierConfig | RemoteTierConfig  # one tier: a vLLM engine in the graph, or a remote endpoint


def tier_config(v: Any) -> Any:
    """A tier's block as its kind: a remote tier has a ``remote`` block, an engine does not."""
    if isinstance(v, dict):
        return (RemoteTierConfig if "remote" in v else EngineTierConfig).model_validate(v)
    if isinstance(v, EngineConfig) and not isinstance(v, EngineTierConfig):  # built in code as the engine's fields
        return EngineTierConfig.model_validate(v.model_dump())
    return v


def is_remote(tier: TierConfig) -> bool:
    return isinstance(tier, RemoteTierConfig)
