"""Time of one engine step on one replica, from bytes moved and FLOPs (a roofline), plus tensor-parallel traffic.

A continuous-batching step decodes one token for each of ``decoding`` running sequences (whose contexts total
``ctx_tokens``) and prefills the prompts admitted at this step (``prefill_tokens`` in all). The step reads the
weights once and the KV cache of every running sequence, so

    t = max(bytes / (bandwidth x efficiency), FLOPs / (peak x efficiency))   per GPU, the model split over TP GPUs
        + 2 all-reduces per layer (TP > 1): latency + 2(TP-1)/TP x tokens x hidden x 2 B / interconnect
        + a fixed per-step overhead (scheduler, sampling, launches).

Decode alone at small batch is bandwidth-bound: the single-stream ceiling is bandwidth / weight bytes read per
token. Prefill is compute-bound: 2 x params FLOPs per prompt token (plus attention).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from app.plan.config import Gpu, Model, Perf


class StepModel(Protocol):
    def step_s(self, decoding: int, ctx_tokens: float, prefill_tokens: float, prefill_sq: float) -> float:
        """Seconds of one step; ``prefill_sq`` is the sum of squared prompt lengths (attention of the prefill)."""


@dataclass(frozen=True)
class Roofline:
    model: Model
    gpu: Gpu
    tp: int
    perf: Perf

    @property
    def peak_flops(self) -> float:
        tflops = self.gpu.fp8_tflops if self.model.compute == "fp8" else self.gpu.bf16_tflops
        if tflops is None:
            raise ValueError(f"{self.model.name}: compute fp8 needs a GPU with fp8_tflops")
        return tflops * 1e12

    def step_s(self, decoding: int, ctx_tokens: float, prefill_tokens: float = 0.0, prefill_sq: float = 0.0) -> float:
        m, p = self.model, self.perf
        tokens = decoding + prefill_tokens
        bytes_moved = m.read_gb * 1e9 + ctx_tokens * m.kv_bytes_per_token + prefill_tokens * m.kv_bytes_per_token
        attn = 4.0 * m.layers * m.heads * m.head_dim  # FLOPs per (query token, context token): QK^T and AV
        flops = 2.0 * m.params_b * 1e9 * tokens + attn * (ctx_tokens + prefill_sq / 2.0)
        t_mem = bytes_moved / self.tp / (self.gpu.bandwidth_gbs * 1e9 * p.bandwidth_efficiency)
        t_cmp = flops / self.tp / (self.peak_flops * p.compute_efficiency)
        return max(t_mem, t_cmp) + self.comm_s(tokens) + p.step_overhead_ms / 1e3

    def comm_s(self, tokens: float) -> float:
        if self.tp == 1:
            return 0.0
        p, m = self.perf, self.model
        per = p.allreduce_latency_us / 1e6 + 2.0 * (self.tp - 1) / self.tp * tokens * m.hidden * 2.0 / (p.interconnect_gbs * 1e9)
        return 2 * m.layers * per

    # -- summaries -----------------------------------------------------------------------------------------------

    def decode_tps(self, batch: int, context: float) -> float:
        """Output tokens/s of the replica decoding ``batch`` sequences of ``context`` tokens each (no prefill)."""
        return batch / self.step_s(batch, batch * context)

    def prefill_tps(self, prompt: int) -> float:
        """Prompt tokens/s prefilling one prompt of ``prompt`` tokens alone."""
        return prompt / self.step_s(0, 0.0, prompt, float(prompt) ** 2)

    def capacity_rps(self, batch: int, mean_prompt: float, mean_output: float) -> float:
        """Requests/s of one replica held at ``batch`` running sequences in steady state: each step B/out requests
        finish and as many join, bringing their prompts. An optimistic bound (the busiest sustainable batch)."""
        joins = batch / mean_output
        ctx = batch * (mean_prompt + mean_output / 2.0)
        t = self.step_s(batch, ctx, joins * mean_prompt, joins * mean_prompt**2)
        return joins / t

