"""Cascades in the planner: tier 1 answers first, the verifier escalates a share of its answers to tier 2.

An escalated request pays twice: tier 1's whole answer (buffer mode: the client sees nothing of it), then
tier 2's. So tier 1 carries every cascaded request (escalated ones included) and tier 2 the direct ones
plus the escalations; the client's latency of an escalated request is tier 1's time plus tier 2's. The
shares are inputs (``routing.escalation_share``, ``routing.direct_share``): the planner has no notion of
quality, so route and cascade are compared at the shares given. Not modelled: the verifier's own time
(milliseconds against seconds of generation) and early streaming (``cascade.stream: early``), where an
escalated request pays only tier 1's first tokens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

from app.plan.config import HOURS_PER_MONTH
from app.plan.sim import Workload, poisson_workload, simulate

PATHS = ("tier1", "direct", "escalated")


@dataclass(frozen=True)
class Loads:
    """Per client request: the requests each tier serves, and how the client's requests split by path."""

    tier1: float  # requests tier 1 serves (its answers, escalated ones included)
    tier2: float  # requests tier 2 serves (direct + escalated)
    direct: float  # straight to tier 2 (route: the routed share; cascade_routing: the direct path)
    escalated: float  # answered by tier 1, then by tier 2

    @property
    def answered_by_tier2(self) -> float:
        return self.direct + self.escalated


def loads(mode: str, tier2_share: float, escalation_share: float = 0.0, direct_share: float = 0.0) -> Loads:
    """route: (1 - s, s); cascade: (1, e); cascade_routing: (1 - d, d + (1 - d) e)."""
    if mode == "route":
        return Loads(1.0 - tier2_share, tier2_share, tier2_share, 0.0)
    d = direct_share if mode == "cascade_routing" else 0.0
    esc = (1.0 - d) * escalation_share
    return Loads(1.0 - d, d + esc, d, esc)


def cost_per_request(ld: Loads, tier1_cost: float, tier2_cost: float) -> float:
    """What one client request costs when a request costs ``tier1_cost`` on tier 1 and ``tier2_cost`` on tier 2."""
    return ld.tier1 * tier1_cost + ld.tier2 * tier2_cost


def per_1k_requests(monthly_usd: float, rps: float) -> float:
    """Monthly cost spread over a month of ``rps`` mean traffic, per 1,000 requests."""
    return monthly_usd / (rps * 3600.0 * HOURS_PER_MONTH) * 1000.0 if rps > 0 else float("nan")


def cascade_workload(rate: float, seconds: float, warmup: float, seed: int, ld: Loads, prompt_dists, output_dist, delay_sampler=None) -> Workload:
    """Arrivals at ``rate``: ``ld.direct`` of them straight to tier 2, the rest to tier 1, of which a share
    ``ld.escalated / ld.tier1`` get a tier-2 entry (same prompt and output length) that follows their tier-1 answer."""
    w = poisson_workload(rate, seconds, warmup, seed, ld.direct, prompt_dists, output_dist, delay_sampler)
    n = len(w.arrival)
    esc = ld.escalated / ld.tier1 if ld.tier1 > 0 else 0.0
    draw = np.random.default_rng(seed + 7919).uniform(size=n)  # its own stream: the arrivals stay common
    parents = np.flatnonzero((w.tier == 1) & (draw < esc))
    m = len(parents)
    cat = lambda a, b: np.concatenate([a, b])  # noqa: E731
    return Workload(
        cat(w.arrival, w.arrival[parents]), cat(w.delay, np.zeros(m)), cat(w.tier, np.full(m, 2)),
        cat(w.prompt, w.prompt[parents]), cat(w.output, w.output[parents]), w.warmup, w.seconds,
        cat(np.full(n, -1), parents),
    )  # fmt: skip


def path_summaries(r) -> dict:
    """Client-side figures overall and per path (tier 1 answered, direct to tier 2, escalated)."""
    out = {"all": r.summary()}
    for p in PATHS:
        out[p] = r.summary(path=p)
    return out


def plan_cascade(planner, result: dict) -> dict:
    """The cascade topology of ``planner``'s config, sized and confirmed as the routed one is."""
    cfg, peak = planner.cfg, planner.cfg.traffic.peak_rps
    rt = cfg.routing
    ld = loads(rt.mode, planner.inp.share, rt.escalation_share, rt.direct_share)
    planner._bar = tqdm(desc="plan: cascade runs", unit="run", disable=not planner.progress)
    try:
        t1, t1_all = planner._chosen(1, peak * ld.tier1, routed=True)
        t2, t2_all = planner._chosen(2, peak * ld.tier2, routed=True)
        ok = all(s is not None and s.feasible for s in (t1, t2))
        sim, added, cost = None, None, float("nan")
        if ok:
            w = cascade_workload(peak, cfg.sim.seconds, cfg.sim.warmup_s, cfg.sim.seed + 100, ld, planner.inp.prompt,
                                 planner.inp.output, _delay(planner))  # fmt: skip
            r, added = planner.confirm(w, {t: s for t, s in ((1, t1), (2, t2)) if s.replicas or planner.remote(t)})
            sim = path_summaries(r)
            cost = t1.monthly_usd + t2.monthly_usd + planner.router_monthly()
    finally:
        planner._bar.close()
        planner._bar = None
    big = result["all_large"]["monthly_usd"]
    mean_prompt1, mean_out = planner.mean_prompt[1], planner.mean_output
    return {
        "mode": rt.mode, "escalation_share": rt.escalation_share,
        "direct_share": rt.direct_share if rt.mode == "cascade_routing" else 0.0,
        "loads": {**asdict(ld), "answered_by_tier2": ld.answered_by_tier2},
        "tier1_tokens_on_escalated_per_request": round(ld.escalated * (mean_prompt1 + mean_out), 1),
        "feasible": ok, "tier1": t1.to_dict() if t1 else None, "tier2": t2.to_dict() if t2 else None,
        "monthly_usd": cost, "per_1k_requests_usd": per_1k_requests(cost, cfg.traffic.rps),
        "saving_vs_all_large": 1.0 - cost / big if ok and big == big else float("nan"),
        "replicas_added_on_confirmation": added,
        "candidates": {"tier1": [s.to_dict() for s in t1_all], "tier2": [s.to_dict() for s in t2_all]},
        "sim": sim,
    }  # fmt: skip


def _delay(planner):
    from app.plan.planner import router_delay

    return router_delay(planner.cfg)


def cascade_curves(planner, result: dict) -> dict:
    """Cost vs escalation share (each sized on the cascade's engines and confirmed) and the percentile vs load at the
    plan's sizes."""
    cfg, peak, pc, c = planner.cfg, planner.cfg.traffic.peak_rps, planner.cfg.plot, result["cascade"]
    fits = {t: planner.fit_of(t, c[f"tier{t}"]) for t in (1, 2)}
    cost, lat = [], []
    seconds = pc.seconds or cfg.sim.seconds
    for e in pc.shares:
        ld = loads(c["mode"], 0.0, e, c["direct_share"])
        s1, _ = planner.size(1, peak * ld.tier1, True, [fits[1]], pc.seconds)
        s2, _ = planner.size(2, peak * ld.tier2, True, [fits[2]], pc.seconds)
        ok = s1.feasible and s2.feasible
        if ok:  # confirmed on the whole cascade, as the routed curve's points are
            w = cascade_workload(peak, seconds, cfg.sim.warmup_s, cfg.sim.seed + 100, ld, planner.inp.prompt, planner.inp.output, _delay(planner))
            planner.confirm(w, {t: x for t, x in ((1, s1), (2, s2)) if x.replicas or planner.remote(t)})
        usd = s1.monthly_usd + s2.monthly_usd + planner.router_monthly() if ok else float("nan")
        cost.append({"escalation_share": e, "tier2_share": ld.answered_by_tier2, "monthly_usd": usd})
    ld = loads(c["mode"], 0.0, c["escalation_share"], c["direct_share"])
    for f in pc.loads:
        w = cascade_workload(peak * f, seconds, cfg.sim.warmup_s, cfg.sim.seed + 200, ld, planner.inp.prompt, planner.inp.output, _delay(planner))
        pools = {t: planner.pool(t, fits[t], c[f"tier{t}"]["replicas"]) for t in (1, 2) if c[f"tier{t}"]["replicas"] or planner.remote(t)}
        sm = simulate(w, pools, cfg.sim.drain_s).summary(percentiles=(cfg.slo.percentile,))
        lat.append({"load": f, "rps": peak * f, **{k: v for k, v in sm.items() if "_p" in k or k == "unfinished"}})
    return {"cost_vs_share": cost, "latency_vs_load": lat}
