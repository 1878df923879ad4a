"""Fewest replicas of a tier that meet the latency objective at a given arrival rate, and the cheapest node type.

Search: start from the throughput bound ceil(rate / capacity of one replica at its largest batch), step down while
it passes (the bound is an estimate), else step up by 1, 2, 4, ... until one passes and bisect back. Every run of
a search uses the same arrivals (common random numbers), so more replicas never see different traffic.
Node types: candidates that fit are sized in order of their bound's cost, and the search stops when the next
candidate's bound already costs more than the best sized one (branch and bound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from app.plan.config import PlanConfig, Slo, Tier
from app.plan.fit import Fit
from app.plan.roofline import Roofline
from app.plan.sim import Pool, SimResult, Workload, simulate


def check(res: SimResult, slo: Slo, tier: int | None = None) -> tuple[bool, dict]:
    """Whether a run meets the objective, with the observed percentile of each bounded metric."""
    m = res.metrics(tier)
    n = len(m["e2e"])
    if n == 0:
        return True, {}
    observed, ok = {}, True
    for k, bound in slo.bounds().items():
        v = m[k]
        observed[k] = float(np.percentile(v, slo.percentile)) if len(v) else 0.0
        ok &= observed[k] <= bound
    frac = float(m["unfinished"].mean())
    observed["unfinished"] = frac
    ok &= frac <= 1.0 - slo.percentile / 100.0
    return bool(ok), observed


@dataclass
class TierSize:
    fit: Fit
    rate: float
    replicas: int
    feasible: bool
    reason: str
    bound: int
    nodes: int = 0
    monthly_usd: float = 0.0
    observed: dict = field(default_factory=dict)
    tried: dict = field(default_factory=dict)  # replicas -> (passed, observed)

    def to_dict(self) -> dict:
        return {
            "node": self.fit.node, "tp": self.fit.tp, "replicas_per_node": self.fit.replicas_per_node,
            "max_seqs": self.fit.max_seqs, "rate_rps": self.rate, "replicas": self.replicas, "nodes": self.nodes,
            "monthly_usd": self.monthly_usd, "feasible": self.feasible, "reason": self.reason, "bound": self.bound,
            "observed_at_slo_percentile": self.observed,
            "tried": {str(k): {"passed": v[0], **v[1]} for k, v in sorted(self.tried.items())},
        }  # fmt: skip


def pool_for(cfg: PlanConfig, tier: Tier, f: Fit, replicas: int) -> Pool:
    gpu = cfg.gpus[cfg.node_types[f.node].gpu]
    return Pool(replicas, Roofline(tier.model, gpu, f.tp, tier.perf), f.max_seqs, tier.engine.max_batched_tokens)


def replica_bound(cfg: PlanConfig, tier: Tier, f: Fit, rate: float, mean_prompt: float, mean_output: float) -> int:
    if rate <= 0:
        return 0
    gpu = cfg.gpus[cfg.node_types[f.node].gpu]
    cap = Roofline(tier.model, gpu, f.tp, tier.perf).capacity_rps(f.max_seqs, mean_prompt, mean_output)
    return max(1, math.ceil(rate / cap))


def size_replicas(
    cfg: PlanConfig, tier_n: int, f: Fit, rate: float, workload: Workload, bound: int, slo: Slo, drain_s: float,
    on_run: Callable[[], None] | None = None, max_replicas: int | None = None,
) -> TierSize:  # fmt: skip
    """Fewest replicas of ``f`` for ``workload`` (all of it goes to tier ``tier_n``)."""
    tier = cfg.tier(tier_n)
    node = cfg.node_types[f.node]
    if rate <= 0:
        return TierSize(f, rate, 0, True, "no traffic", 0)
    if slo.tpot_s is not None:  # no number of replicas beats one sequence decoding alone
        gpu = cfg.gpus[node.gpu]
        ctx = float(np.mean(workload.prompt)) + float(np.mean(workload.output)) / 2.0
        floor = Roofline(tier.model, gpu, f.tp, tier.perf).step_s(1, ctx)
        if floor > slo.tpot_s:
            return TierSize(f, rate, 0, False, f"one sequence alone decodes at {floor:.3f} s/token > tpot_s {slo.tpot_s:g}", bound)
    limit = max_replicas or max(4 * bound, bound + 16)
    tried: dict[int, tuple[bool, dict]] = {}

    def passes(n: int) -> bool:
        if n not in tried:
            res = simulate(workload, {tier_n: pool_for(cfg, tier, f, n)}, drain_s)
            tried[n] = check(res, slo, tier_n)
            if on_run:
                on_run()
        return tried[n][0]

    n = max(1, bound)
    if passes(n):
        while n > 1 and passes(n - 1):
            n -= 1
        best = n
    else:
        lo, step, hi = n, 1, None
        while hi is None:
            cand = min(lo + step, limit)
            if passes(cand):
                hi = cand
            elif cand >= limit:
                break
            else:
                lo, step = cand, step * 2
        if hi is None:
            obs = tried[limit][1]
            worst = ", ".join(f"p{slo.percentile:g} {k} {v:.3g}" + ("" if k == "unfinished" else " s") for k, v in obs.items())
            return TierSize(
                f, rate, limit, False, f"objective not met even with {limit} replicas ({worst})", bound, tried=tried
            )
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if passes(mid):
                hi = mid
            else:
                lo = mid
        best = hi
    nodes = math.ceil(best / f.replicas_per_node)
    return TierSize(
        f, rate, best, True, "meets the objective", bound, nodes, nodes * node.monthly_usd, tried[best][1], tried
    )


def _renode(cfg: PlanConfig, s: TierSize, f: Fit) -> TierSize:
    """The same replicas on another node type with the same engine."""
    nodes = math.ceil(s.replicas / f.replicas_per_node) if s.feasible else 0
    return TierSize(
        f, s.rate, s.replicas, s.feasible, s.reason, s.bound, nodes, nodes * cfg.node_types[f.node].monthly_usd,
        s.observed, s.tried,
    )  # fmt: skip


def cheapest(
    cfg: PlanConfig, tier_n: int, fits: list[Fit], rate: float, make_workload: Callable[[], Workload],
    mean_prompt: float, mean_output: float, slo: Slo, drain_s: float, on_run=None,
) -> tuple[TierSize | None, list[TierSize]]:  # fmt: skip
    """Size each fitting candidate in order of its bound's cost; stop when the next bound costs more than the best."""
    tier = cfg.tier(tier_n)
    ok = [f for f in fits if f.fits]
    if not ok:
        return None, []
    if rate <= 0:
        f = min(ok, key=lambda f: cfg.node_types[f.node].monthly_usd)
        return TierSize(f, 0.0, 0, True, "no traffic", 0), []

    def bound_cost(f: Fit) -> tuple[float, int, int]:
        b = replica_bound(cfg, tier, f, rate, mean_prompt, mean_output)
        return math.ceil(b / f.replicas_per_node) * cfg.node_types[f.node].monthly_usd, -f.tp, b

    ranked = sorted(ok, key=bound_cost)
    workload = make_workload()
    best, sized = None, []
    by_shape: dict[tuple, TierSize] = {}  # replicas depend on the engine (GPU, TP, seqs), not on the node type
    for f in ranked:
        lb_cost, _, b = bound_cost(f)
        if best is not None and lb_cost >= best.monthly_usd:
            break
        shape = (cfg.node_types[f.node].gpu, f.tp, f.max_seqs, f.kv_tokens)
        if shape in by_shape:
            s = _renode(cfg, by_shape[shape], f)
        else:
            s = by_shape[shape] = size_replicas(cfg, tier_n, f, rate, workload, b, slo, drain_s, on_run)
        sized.append(s)
        if s.feasible and (best is None or s.monthly_usd < best.monthly_usd):
            best = s
    if best is None:  # none meets the objective: report the one that came closest (was simulated furthest)
        return (max(sized, key=lambda s: s.replicas) if sized else None), sized
    return best, sized
