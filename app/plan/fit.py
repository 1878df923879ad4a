"""Does a model fit a node type, with which tensor-parallel degree, and how many sequences does its KV cache hold.

Per GPU of a replica of tensor-parallel degree TP: usable = memory x gpu_memory_utilization; the weights take
weight_gb / TP, the reserve (activations, CUDA graphs, NCCL) reserve_gb; what is left is KV cache. A node type
fits if the weights and reserve fit and the KV cache of the replica holds at least one max_model_len sequence.
Concurrent sequences = KV tokens / mean context (prompt + output, i.e. the context a request ends with), capped by
max_num_seqs. Replicas per node = GPUs of the node // TP.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from app.plan.config import PlanConfig, Tier


@dataclass(frozen=True)
class Fit:
    node: str
    tp: int
    fits: bool
    reason: str
    replicas_per_node: int = 0
    weights_per_gpu_gb: float = 0.0
    usable_per_gpu_gb: float = 0.0
    kv_tokens: int = 0
    max_seqs: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def tp_options(tier: Tier, gpus: int) -> list[int]:
    """The tier's tensor_parallel list, or every degree that divides the node's GPUs and the model's KV heads."""
    if tier.tensor_parallel:
        return sorted(set(tier.tensor_parallel))
    m = tier.model
    return [d for d in range(1, gpus + 1) if gpus % d == 0 and m.kv_heads % d == 0 and m.heads % d == 0]


def fit(cfg: PlanConfig, tier: Tier, node_name: str, tp: int, mean_context: float) -> Fit:
    node = cfg.node_types[node_name]
    gpu = cfg.gpus[node.gpu]
    m, e = tier.model, tier.engine
    usable = gpu.memory_gb * e.gpu_memory_utilization
    w = m.weight_gb / tp
    base = dict(node=node_name, tp=tp, weights_per_gpu_gb=round(w, 2), usable_per_gpu_gb=round(usable, 2))
    if tp > node.gpus:
        return Fit(fits=False, reason=f"TP {tp} needs {tp} GPUs; {node_name} has {node.gpus}", **base)
    if m.kv_heads % tp:
        return Fit(fits=False, reason=f"TP {tp} does not divide the {m.kv_heads} KV heads", **base)
    if w + e.reserve_gb > usable:
        return Fit(
            fits=False,
            reason=f"weights {m.weight_gb:.1f} GB / TP {tp} = {w:.1f} GB + reserve {e.reserve_gb:g} GB per GPU > usable "
            f"{usable:.1f} GB ({gpu.memory_gb:g} GB x {e.gpu_memory_utilization:g})",
            **base,
        )
    kv_tokens = int((usable - w - e.reserve_gb) * tp * 1e9 / m.kv_bytes_per_token)
    if kv_tokens < e.max_model_len:
        return Fit(
            fits=False, kv_tokens=kv_tokens,
            reason=f"KV cache holds {kv_tokens} tokens < max_model_len {e.max_model_len}", **base,
        )  # fmt: skip
    seqs = min(e.max_num_seqs, max(1, int(kv_tokens / mean_context)))
    return Fit(
        fits=True, reason="fits", replicas_per_node=node.gpus // tp, kv_tokens=kv_tokens, max_seqs=seqs, **base
    )


def fits_for_tier(cfg: PlanConfig, tier: Tier, mean_context: float) -> list[Fit]:
    out = []
    for name in tier.node_types or list(cfg.node_types):
        for tp in tp_options(tier, cfg.node_types[name].gpus):
            out.append(fit(cfg, tier, name, tp, mean_context))
    return out
