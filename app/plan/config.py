"""The planner's inputs: a validated YAML/JSON config whose defaults are the design's hardware and models.

Every figure a default rests on is named where it is set (see ``SOURCES``). A config file
only needs the fields it changes; anything unknown is an error naming the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from app.plan.fields import Spread, Strict
from app.plan.remote_config import RateLimit, Remote  # noqa: F401 (RateLimit: re-exported with the config's parts)
from app.validation import describe

HOURS_PER_MONTH = 730.0

SOURCES = {
    "aws_pricing": "AWS EC2 On-Demand pricing, us-east-1, Linux: https://aws.amazon.com/ec2/pricing/on-demand/",
    "aws_g6e": "Amazon EC2 G6e instances (GPUs, vCPUs, memory per size): https://aws.amazon.com/ec2/instance-types/g6e/",
    "l40s": "NVIDIA L40S datasheet (48 GB GDDR6, 864 GB/s, BF16 362 TFLOPS / FP8 733 TFLOPS dense; the datasheet's "
    "higher figures are with sparsity): https://resources.nvidia.com/en-us-l40s/l40s-datasheet-28413",
    "llama_8b": "Llama-3.1-8B config.json (32 layers, hidden 4096, 32 heads, 8 KV heads, head dim 128, vocab 128256, "
    "MLP 14336): https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct",
    "llama_70b": "Llama-3.1-70B config.json (80 layers, hidden 8192, 64 heads, 8 KV heads, head dim 128, vocab 128256, "
    "MLP 28672): https://huggingface.co/meta-llama/Llama-3.1-70B-Instruct",
    "router_latency": "docs/benchmarks.md (scripts/bench_serve.py): added latency of the router at c=1, p50 12.4 ms, "
    "p99 17.6 ms on a 2-core CPU host",
}


class Traffic(Strict):
    rps: float = Field(120.0, gt=0, description="mean requests per second")
    peak_factor: float = Field(1.0, ge=1.0, description="diurnal peak / mean; nodes are sized for rps * peak_factor")
    prompt_tokens: Spread = Spread(mean=600, p95=2000)
    output_tokens: Spread = Spread(mean=200, p95=600)
    chars_per_token: float = Field(4.0, gt=0, description="prompt characters per token when reading a traffic file")

    @property
    def peak_rps(self) -> float:
        return self.rps * self.peak_factor


class Split(Strict):
    tier2_share: float = Field(0.15, ge=0.0, le=1.0, description="share of requests the router sends to tier 2")


class Routing(Strict):
    """How requests reach the tiers (as the served ``routing.mode``); the shares are inputs, not predictions."""

    mode: Literal["route", "cascade", "cascade_routing"] = Field(
        "route", description="route: split.tier2_share goes to tier 2; cascade(_routing): also plan the cascade beside it"
    )
    escalation_share: float = Field(0.15, ge=0.0, le=1.0, description="cascades: share of tier 1's answers escalated to tier 2")
    direct_share: float = Field(0.10, ge=0.0, le=1.0, description="cascade_routing: share of requests sent straight to tier 2")


class Slo(Strict):
    """Latency objective at ``percentile``, end to end as the client sees it (router included). Unset = no bound."""

    percentile: float = Field(99.0, gt=50.0, lt=100.0)
    ttft_s: float | None = Field(2.0, gt=0, description="time to first token")
    tpot_s: float | None = Field(0.1, gt=0, description="time per output token after the first")
    e2e_s: float | None = Field(None, gt=0, description="request latency, first byte in to last token out")

    @model_validator(mode="after")
    def _some(self):
        if self.ttft_s is None and self.tpot_s is None and self.e2e_s is None:
            raise ValueError("set at least one of ttft_s, tpot_s, e2e_s")
        return self

    def bounds(self) -> dict[str, float]:
        return {k: v for k, v in (("ttft", self.ttft_s), ("tpot", self.tpot_s), ("e2e", self.e2e_s)) if v is not None}


class Gpu(Strict):
    memory_gb: float = Field(gt=0)
    bandwidth_gbs: float = Field(gt=0, description="memory bandwidth, GB/s")
    bf16_tflops: float = Field(gt=0, description="dense BF16/FP16 tensor TFLOPS")
    fp8_tflops: float | None = Field(None, gt=0, description="dense FP8 tensor TFLOPS (None: no FP8)")


class NodeType(Strict):
    gpu: str
    gpus: int = Field(ge=1)
    hourly_usd: float = Field(gt=0, description="on-demand price per hour")

    @property
    def monthly_usd(self) -> float:
        return self.hourly_usd * HOURS_PER_MONTH


class Model(Strict):
    """Architecture (for KV cache and FLOPs) and the size of the served weights."""

    name: str
    params_b: float = Field(gt=0, description="parameters, billions (FLOPs per token = 2 x params)")
    weight_gb: float = Field(gt=0, description="bytes of the served weights, GB")
    decode_read_gb: float | None = Field(None, gt=0, description="weight bytes read per decode step (default weight_gb)")
    layers: int = Field(ge=1)
    hidden: int = Field(ge=1)
    heads: int = Field(ge=1)
    kv_heads: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    kv_bytes: float = Field(2.0, gt=0, description="bytes per KV element (2: FP16/BF16 cache)")
    compute: Literal["bf16", "fp8"] = Field("bf16", description="tensor-core precision of the matmuls")

    @property
    def kv_bytes_per_token(self) -> float:
        return 2 * self.layers * self.kv_heads * self.head_dim * self.kv_bytes

    @property
    def read_gb(self) -> float:
        return self.decode_read_gb or self.weight_gb


class Engine(Strict):
    """vLLM-like engine settings of one replica."""

    max_model_len: int = Field(16384, ge=16)
    max_num_seqs: int = Field(256, ge=1)
    max_batched_tokens: int = Field(8192, ge=1, description="prefill tokens admitted per step (at least one request)")
    gpu_memory_utilization: float = Field(0.90, gt=0, le=1.0)
    reserve_gb: float = Field(2.0, ge=0, description="per GPU: activations, CUDA graphs, NCCL buffers")


class Perf(Strict):
    """Efficiencies of the roofline step-time model (see roofline.py and docs/planning.md's comparison to public figures)."""

    bandwidth_efficiency: float = Field(0.80, gt=0, le=1.0)
    compute_efficiency: float = Field(0.55, gt=0, le=1.0)
    step_overhead_ms: float = Field(1.5, ge=0, description="per engine step: scheduling, sampling, kernel launches")
    allreduce_latency_us: float = Field(20.0, ge=0, description="per all-reduce, tensor parallel > 1")
    interconnect_gbs: float = Field(25.0, gt=0, description="GPU-to-GPU all-reduce bandwidth (L40S: PCIe, no NVLink)")


class Tier(Strict):
    """Self-hosted (``model``: sized in nodes) or ``remote`` (priced per token); exactly one of them."""

    model: Model | None = None
    remote: Remote | None = None
    engine: Engine = Engine()
    perf: Perf = Perf()
    node_types: list[str] | None = Field(None, description="candidate node types (default: all)")
    tensor_parallel: list[int] | None = Field(None, description="candidate degrees (default: every one that divides the node's GPUs and the KV heads)")

    @model_validator(mode="after")
    def _kind(self):
        if (self.model is None) == (self.remote is None):
            raise ValueError("set exactly one of model (self-hosted, sized in nodes) and remote (priced per token)")
        if self.remote is not None and (self.node_types or self.tensor_parallel):
            raise ValueError("a remote tier has no node_types or tensor_parallel")
        return self


class Router(Strict):
    latency_ms: Spread = Spread(mean=13.0, p95=18.0)
    node_type: str | None = Field("g6e.xlarge", description="node(s) of the router LLM and embedder; None: none billed")
    nodes: int = Field(1, ge=0)


class Sim(Strict):
    seconds: float = Field(60.0, gt=0, description="simulated arrivals per run (after the warm-up)")
    warmup_s: float = Field(15.0, ge=0, description="arrivals in the first warmup_s are not measured")
    drain_s: float = Field(60.0, ge=0, description="time after the last arrival for requests to finish; later = unfinished")
    seed: int = 0


class PlotCfg(Strict):
    shares: list[float] = Field([0.05, 0.15, 0.3, 0.5, 1.0], description="tier-2 shares for cost vs share")
    loads: list[float] = Field([0.25, 0.5, 0.75, 1.0, 1.25], description="fractions of peak for p99 vs load")
    seconds: float | None = Field(None, gt=0, description="simulated seconds per run for the plot's points (default sim.seconds)")

    @field_validator("shares")
    @classmethod
    def _shares(cls, v):
        if not v or any(not 0.0 <= s <= 1.0 for s in v):
            raise ValueError("each share must be between 0 and 1")
        return sorted(v)

    @field_validator("loads")
    @classmethod
    def _loads(cls, v):
        if not v or any(x <= 0 for x in v):
            raise ValueError("each load must be > 0")
        return sorted(v)


# -- defaults: the design's hardware and models ---------------------------------------------------------------

L40S = Gpu(memory_gb=48.0, bandwidth_gbs=864.0, bf16_tflops=362.0, fp8_tflops=733.0)

# Prices: AWS EC2 On-Demand, us-east-1 (SOURCES["aws_pricing"]); GPUs per size: SOURCES["aws_g6e"].
G6E = {
    "g6e.xlarge": NodeType(gpu="L40S", gpus=1, hourly_usd=1.861),
    "g6e.4xlarge": NodeType(gpu="L40S", gpus=1, hourly_usd=3.004),
    "g6e.12xlarge": NodeType(gpu="L40S", gpus=4, hourly_usd=10.493),
    "g6e.48xlarge": NodeType(gpu="L40S", gpus=8, hourly_usd=30.131),
}

# Llama-3.1-8B-Instruct AWQ INT4 (group 128): linear layers 6.98e9 params x (0.5 B + fp16 scale and 4-bit zero
# per 128 = 0.0195 B) = 3.63 GB, plus embeddings and lm_head unquantised (2 x 128256 x 4096 x 2 B = 2.10 GB):
# 5.73 GB. A decode step reads all of it but the embedding table (1.05 GB): 4.68 GB.
LLAMA_8B_AWQ = Model(
    name="Llama-3.1-8B-Instruct AWQ-INT4", params_b=8.03, weight_gb=5.73, decode_read_gb=4.68,
    layers=32, hidden=4096, heads=32, kv_heads=8, head_dim=128, compute="bf16",
)  # fmt: skip

# Llama-3.1-70B-Instruct FP8 (W8A8, lm_head left in BF16 as the FP8 recipes do): linear layers 68.45e9 params x 1 B
# + embeddings and lm_head 2 x 128256 x 8192 x 2 B = 4.20 GB: 72.65 GB (the "~70 GB" at 1 byte per parameter is
# 70.55 GB). A decode step reads all but the embedding table: 70.55 GB.
LLAMA_70B_FP8 = Model(
    name="Llama-3.1-70B-Instruct FP8", params_b=70.55, weight_gb=72.65, decode_read_gb=70.55,
    layers=80, hidden=8192, heads=64, kv_heads=8, head_dim=128, compute="fp8",
)  # fmt: skip


class PlanConfig(Strict):
    traffic: Traffic = Traffic()
    split: Split = Split()
    routing: Routing = Routing()
    slo: Slo = Slo()
    router: Router = Router()
    gpus: dict[str, Gpu] = Field(default_factory=lambda: {"L40S": L40S})
    node_types: dict[str, NodeType] = Field(default_factory=lambda: dict(G6E))
    tier1: Tier = Tier(model=LLAMA_8B_AWQ)
    tier2: Tier = Tier(model=LLAMA_70B_FP8)
    sim: Sim = Sim()
    plot: PlotCfg = PlotCfg()

    @model_validator(mode="after")
    def _references(self):
        for name, node in self.node_types.items():
            if node.gpu not in self.gpus:
                raise ValueError(f"node_types.{name}.gpu: unknown GPU {node.gpu!r} (known: {', '.join(self.gpus)})")
        for tier_name in ("tier1", "tier2"):
            tier = getattr(self, tier_name)
            if tier.remote is not None:
                continue
            for n in tier.node_types or []:
                if n not in self.node_types:
                    raise ValueError(f"{tier_name}.node_types: unknown node type {n!r} (known: {', '.join(self.node_types)})")
            for tp in tier.tensor_parallel or []:
                if tp < 1:
                    raise ValueError(f"{tier_name}.tensor_parallel: {tp} must be >= 1")
        if self.router.node_type is not None and self.router.node_type not in self.node_types:
            raise ValueError(f"router.node_type: unknown node type {self.router.node_type!r}")
        return self

    def tier(self, n: int) -> Tier:
        return self.tier1 if n == 1 else self.tier2


def _set_path(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    cur = data
    for k in keys[:-1]:
        nxt = cur.get(k)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[k] = nxt
        cur = nxt
    cur[keys[-1]] = value


def build_config(data: dict | None = None, overrides: dict[str, Any] | None = None, source: str = "config") -> PlanConfig:
    """Validate ``data`` (a parsed YAML/JSON mapping) with dotted ``overrides`` applied; ValueError names the field."""
    merged = PlanConfig().model_dump(mode="python")
    for t in ("tier1", "tier2"):  # a remote tier starts from nothing: the default self-hosted model is not merged in
        given = (data or {}).get(t)
        if (isinstance(given, dict) and "remote" in given) or any(k.startswith(f"{t}.remote") for k in overrides or {}):
            merged[t] = {}
    _deep_update(merged, data or {})
    for k, v in (overrides or {}).items():
        _set_path(merged, k, v)
    try:
        return PlanConfig.model_validate(merged)
    except ValidationError as e:
        raise ValueError(f"{source}: {describe(e)}") from None


def _deep_update(base: dict, new: dict) -> None:
    """Merge ``new`` into ``base`` key by key, except a tier's ``model``: a model given is taken whole."""
    if not isinstance(new, dict):
        raise ValueError(f"expected a mapping, got {type(new).__name__}")
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict) and k != "model":
            _deep_update(base[k], v)
        else:
            base[k] = v


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> PlanConfig:
    if path is None:
        return build_config(None, overrides, "defaults")
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--config {path}: no such file")
    text = p.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"--config {path}: not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {e}") from None
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"--config {path}: the top level must be a mapping")
    return build_config(data, overrides, str(path))
