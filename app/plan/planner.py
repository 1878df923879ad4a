"""Puts the planner together: fit, size each tier for the routed topology and tier 2 for all traffic, cost both,
and simulate both at peak. Also the points of the plot (cost vs tier-2 share, p99 vs load)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from app.plan.config import SOURCES, Engine, PlanConfig
from app.plan.fit import Fit, fits_for_tier
from app.plan.remote import RemotePool, RemoteSize
from app.plan.roofline import Roofline
from app.plan.sim import Pool, Workload, poisson_workload, simulate
from app.plan.sizing import TierSize, check, cheapest, pool_for
from app.plan.tokens import TokenDist, lognormal_params, prompt_tokens_from_texts


@dataclass
class Inputs:
    """What the traffic looks like: prompt tokens per tier, output tokens, the tier-2 share and where each came from."""

    prompt: dict[int, TokenDist]
    output: TokenDist
    share: float
    share_source: str
    prompt_source: str


def read_scored(path: str) -> tuple[list[int], list[str]]:
    """(tiers, texts) of a ``tierroute score`` output; every line needs ``tier`` 1 or 2."""
    from app.traffic import read_requests

    rows, texts, _ = read_requests(path)
    tiers = []
    for n, row in enumerate(rows, start=1):
        t = row.get("tier")
        if t not in (1, 2) or isinstance(t, bool):
            raise ValueError(f"--scored {path}: row {n} has tier {t!r}; expected 1 or 2 (the output of `tierroute score`)")
        tiers.append(t)
    if not tiers:
        raise ValueError(f"--scored {path}: no rows")
    return tiers, texts


def make_inputs(cfg: PlanConfig, scored: str | None = None, traffic: str | None = None) -> Inputs:
    """Token distributions and split from the config, a scored traffic file (split and per-tier prompts) or an
    unscored traffic file (prompts only)."""
    # a request must fit the engine's context: outputs are capped at a quarter of it, prompts at the rest
    hosted = [cfg.tier(t).engine.max_model_len for t in (1, 2) if cfg.tier(t).remote is None]
    max_len = min(hosted or [Engine().max_model_len])  # a remote tier's context is not ours to plan
    out = TokenDist.from_spread(cfg.traffic.output_tokens, cap=max(1, max_len // 4))
    prompt = {t: TokenDist.from_spread(cfg.traffic.prompt_tokens) for t in (1, 2)}
    share, share_src, prompt_src = cfg.split.tier2_share, "config split.tier2_share", "config traffic.prompt_tokens"
    cpt = cfg.traffic.chars_per_token
    if scored:
        tiers, texts = read_scored(scored)
        toks = np.asarray(prompt_tokens_from_texts(texts, cpt))
        tiers_a = np.asarray(tiers)
        share = float((tiers_a == 2).mean())
        share_src = f"{scored} ({int((tiers_a == 2).sum())} of {len(tiers)} rows tier 2)"
        everyone = TokenDist.empirical(toks)
        for t in (1, 2):
            sel = toks[tiers_a == t]
            prompt[t] = TokenDist.empirical(sel) if len(sel) else everyone
        prompt_src = f"{scored} (characters / {cpt:g}, per tier)"
    elif traffic:
        from app.traffic import read_requests

        _, texts, _ = read_requests(traffic)
        if not texts:
            raise ValueError(f"--traffic {traffic}: no prompts")
        d = TokenDist.empirical(prompt_tokens_from_texts(texts, cpt))
        prompt = {1: d, 2: d}
        prompt_src = f"{traffic} ({len(texts)} prompts, characters / {cpt:g})"
    for t in (1, 2):
        p = prompt[t]
        prompt[t] = TokenDist(p.mean, p.p95, p.values, cap=max(1, max_len - out.cap))
    return Inputs(prompt, out, share, share_src, prompt_src)


def router_delay(cfg: PlanConfig):
    mu, s = lognormal_params(cfg.router.latency_ms.mean, cfg.router.latency_ms.p95)
    return lambda rng, n: rng.lognormal(mu, s, size=n) / 1e3


class Planner:
    def __init__(self, cfg: PlanConfig, inputs: Inputs, progress: bool = True):
        self.cfg, self.inp, self.progress = cfg, inputs, progress
        self.mean_prompt = {t: inputs.prompt[t].expected() for t in (1, 2)}
        self.mean_output = inputs.output.expected()
        self.mean_prompt_all = (1.0 - inputs.share) * self.mean_prompt[1] + inputs.share * self.mean_prompt[2]
        # the large tier in the all-large topology serves every request: its context is the traffic's overall mean
        self.fits = {t: [] if self.remote(t) else fits_for_tier(cfg, cfg.tier(t), self.mean_prompt[t] + self.mean_output) for t in (1, 2)}
        self._bar = None

    # -- building blocks -------------------------------------------------------------------------------------

    def workload(self, rate: float, share: float, routed: bool, seconds: float | None = None, seed_offset: int = 0) -> Workload:
        s = self.cfg.sim
        return poisson_workload(
            rate, seconds or s.seconds, s.warmup_s, s.seed + seed_offset, share, self.inp.prompt, self.inp.output,
            router_delay(self.cfg) if routed else None,
        )  # fmt: skip

    def _tick(self):
        if self._bar is not None:
            self._bar.update(1)

    def remote(self, t: int) -> bool:
        return self.cfg.tier(t).remote is not None

    def size(self, tier_n: int, rate: float, routed: bool, fits: list[Fit] | None = None, seconds=None) -> tuple[TierSize | RemoteSize | None, list[TierSize]]:
        if self.remote(tier_n):  # no nodes: priced per token on the month's mean traffic
            rem = self.cfg.tier(tier_n).remote
            mean = rate / self.cfg.traffic.peak_factor
            prompt = self.mean_prompt[tier_n] if routed else self.mean_prompt_all  # unrouted: every request's prompt
            return RemoteSize(rem, rate, mean, prompt, self.mean_output), []
        share = 1.0 if tier_n == 2 else 0.0
        return cheapest(
            self.cfg, tier_n, fits or self.fits[tier_n], rate,
            lambda: self.workload(rate, share, routed, seconds, seed_offset=tier_n),
            self.mean_prompt[tier_n], self.mean_output, self.cfg.slo, self.cfg.sim.drain_s, self._tick,
        )  # fmt: skip

    def _chosen(self, tier_n: int, rate: float, routed: bool) -> tuple[TierSize | None, list[TierSize]]:
        """The cheapest size, copied (confirmation may add replicas to it; the candidates stay as sized)."""
        best, sized = self.size(tier_n, rate, routed)
        return copy.copy(best), sized

    def router_monthly(self) -> float:
        r = self.cfg.router
        return r.nodes * self.cfg.node_types[r.node_type].monthly_usd if r.node_type else 0.0

    def pool(self, t: int, f: Fit | None, replicas: int) -> Pool | RemotePool:
        if self.remote(t):
            return RemotePool(self.cfg.tier(t).remote, self.cfg.sim.seed + t)
        return pool_for(self.cfg, self.cfg.tier(t), f, replicas)

    def pools(self, sizes: dict) -> dict[int, Pool | RemotePool]:
        return {t: self.pool(t, s.fit, s.replicas) for t, s in sizes.items() if s and (s.replicas or self.remote(t))}

    # -- the plan --------------------------------------------------------------------------------------------

    def plan(self) -> dict:
        cfg, peak, share = self.cfg, self.cfg.traffic.peak_rps, self.inp.share
        self._bar = tqdm(desc="plan: simulation runs", unit="run", disable=not self.progress)
        try:
            t1, t1_all = self._chosen(1, peak * (1.0 - share), routed=True)
            t2, t2_all = self._chosen(2, peak * share, routed=True)
            big, big_all = self._chosen(2, peak, routed=False)
            routed_ok = all(s is not None and s.feasible for s in (t1, t2))
            routed_cost = float("nan")
            big_ok = big is not None and big.feasible
            w = self.workload(peak, share, routed=True, seed_offset=100)
            sims, added = {}, {}
            if routed_ok:
                r, added["routed"] = self.confirm(w, {t: s for t, s in ((1, t1), (2, t2)) if s.replicas or self.remote(t)})
                sims["routed"] = {"all": r.summary(), "tier1": r.summary(1), "tier2": r.summary(2)}
                routed_cost = t1.monthly_usd + t2.monthly_usd + self.router_monthly()
            if big_ok:
                wl = Workload(w.arrival, np.zeros_like(w.delay), np.full_like(w.tier, 2), w.prompt, w.output, w.warmup, w.seconds)
                r, added["all_large"] = self.confirm(wl, {2: big})
                sims["all_large"] = {"all": r.summary()}
        finally:
            self._bar.close()
            self._bar = None
        big_cost = big.monthly_usd if big_ok else float("nan")
        out = {
            "scenario": {
                "mean_rps": cfg.traffic.rps, "peak_factor": cfg.traffic.peak_factor, "peak_rps": peak,
                "tier2_share": share, "share_source": self.inp.share_source, "routing": cfg.routing.model_dump(),
                "prompt_tokens": {f"tier{t}": self.inp.prompt[t].describe() for t in (1, 2)},
                "prompt_source": self.inp.prompt_source, "output_tokens": self.inp.output.describe(),
                "mean_prompt_tokens": {f"tier{t}": round(self.mean_prompt[t], 1) for t in (1, 2)},
                "mean_output_tokens": round(self.mean_output, 1),
                "slo": cfg.slo.model_dump(), "sim": cfg.sim.model_dump(),
            },  # fmt: skip
            "fits": {f"tier{t}": [f.to_dict() for f in self.fits[t]] for t in (1, 2)},
            "models": {f"tier{t}": self.model_figures(t) for t in (1, 2)},
            "routed": {
                "feasible": routed_ok,
                "tier1": t1.to_dict() if t1 else None,
                "tier2": t2.to_dict() if t2 else None,
                "router": {"node": cfg.router.node_type, "nodes": cfg.router.nodes, "monthly_usd": self.router_monthly()},
                "monthly_usd": routed_cost,
                "replicas_added_on_confirmation": added.get("routed"),
                "candidates": {"tier1": [s.to_dict() for s in t1_all], "tier2": [s.to_dict() for s in t2_all]},
                "sim": sims.get("routed"),
            },
            "all_large": {
                "feasible": big_ok, "tier2": big.to_dict() if big else None, "monthly_usd": big_cost,
                "replicas_added_on_confirmation": added.get("all_large"),
                "candidates": [s.to_dict() for s in big_all], "sim": sims.get("all_large"),
            },  # fmt: skip
            "saving": {
                "monthly_usd": big_cost - routed_cost if routed_ok and big_ok else float("nan"),
                "fraction": 1.0 - routed_cost / big_cost if routed_ok and big_ok else float("nan"),
            },
            "sources": SOURCES,
        }
        if cfg.routing.mode != "route":
            from app.plan.cascade import plan_cascade

            out["cascade"] = plan_cascade(self, out)
        return out

    def confirm(self, w: Workload, sizes: dict[int, TierSize], max_rounds: int = 8):
        """Simulate the whole topology on arrivals the sizing never saw; while a tier misses the objective, give it
        one more replica (the sizing runs are finite samples: a tier sized at the edge can miss on other arrivals).
        Updates ``sizes`` in place; returns (the last run, replicas added per tier)."""
        added = {t: 0 for t in sizes}
        for _ in range(max_rounds):
            r = simulate(w, self.pools(sizes), self.cfg.sim.drain_s)
            self._tick()
            # a remote tier cannot be given replicas: its latency is reported as it is (see remote.py)
            missing = [t for t, s in sizes.items() if s.replicas and not self.remote(t) and not check(r, self.cfg.slo, t)[0]]
            if not missing:
                break
            for t in missing:
                s = sizes[t]
                s.replicas += 1
                s.nodes = math.ceil(s.replicas / s.fit.replicas_per_node)
                s.monthly_usd = s.nodes * self.cfg.node_types[s.fit.node].monthly_usd
                added[t] += 1
        for t, s in sizes.items():
            if self.remote(t):
                ok, s.observed = check(r, self.cfg.slo, t)
                s.reason = "remote: priced per token" + ("" if ok else "; its latency misses the objective (no replicas to add)")
            else:
                s.observed = check(r, self.cfg.slo, t)[1] if s.replicas else {}
        return r, {f"tier{t}": n for t, n in added.items()}

    def model_figures(self, t: int) -> dict:
        """Per fitting (node, TP): the roofline's tokens/s at batch 1 and at the largest batch, prefill tokens/s."""
        tier, out = self.cfg.tier(t), []
        if tier.remote is not None:
            return {"name": tier.remote.model, "remote": True, "configs": []}
        ctx = self.mean_prompt[t] + self.mean_output / 2.0
        for f in self.fits[t]:
            if not f.fits:
                continue
            r = Roofline(tier.model, self.cfg.gpus[self.cfg.node_types[f.node].gpu], f.tp, tier.perf)
            out.append({
                "node": f.node, "tp": f.tp, "decode_tps_batch1": round(r.decode_tps(1, ctx), 1),
                "decode_tps_max_batch": round(r.decode_tps(f.max_seqs, ctx), 0), "max_seqs": f.max_seqs,
                "prefill_tps": round(r.prefill_tps(int(self.mean_prompt[t])), 0),
                "replica_capacity_rps": round(r.capacity_rps(f.max_seqs, self.mean_prompt[t], self.mean_output), 2),
            })  # fmt: skip
        return {"name": tier.model.name, "weight_gb": tier.model.weight_gb, "kv_bytes_per_token": tier.model.kv_bytes_per_token, "configs": out}

    # -- the plot's points -----------------------------------------------------------------------------------

    def curves(self, result: dict) -> dict:
        """Cost vs tier-2 share (each share sized and confirmed as the plan is, on the plan's engines) and the
        objective's percentile vs load (replicas fixed at the plan)."""
        cfg, peak = self.cfg, self.cfg.traffic.peak_rps
        pc = cfg.plot
        chosen = {t: self._chosen_fit(result, t) for t in (1, 2)}
        big_fit = self._chosen_fit(result, 2, key="all_large")
        cost = []
        todo = len(pc.shares) + len(pc.loads)
        with tqdm(total=todo, desc="plot points", disable=not self.progress) as bar:
            for s in pc.shares:
                c1, _ = self.size(1, peak * (1 - s), True, [chosen[1]], pc.seconds)
                c2, _ = self.size(2, peak * s, True, [chosen[2]], pc.seconds)
                ok = c1.feasible and c2.feasible
                if ok:
                    w = self.workload(peak, s, routed=True, seconds=pc.seconds, seed_offset=100)
                    self.confirm(w, {t: c for t, c in ((1, c1), (2, c2)) if c.replicas or self.remote(t)})
                cost.append({
                    "tier2_share": s, "tier1_replicas": c1.replicas, "tier2_replicas": c2.replicas,
                    "tier1_nodes": c1.nodes, "tier2_nodes": c2.nodes,
                    "monthly_usd": c1.monthly_usd + c2.monthly_usd + self.router_monthly() if ok else float("nan"),
                })  # fmt: skip
                bar.update(1)
            load = []
            r1, r2 = result["routed"]["tier1"], result["routed"]["tier2"]
            big = result["all_large"]["tier2"]
            for f in pc.loads:
                w = self.workload(peak * f, self.inp.share, routed=True, seconds=pc.seconds, seed_offset=200)
                row = {"load": f, "rps": peak * f}
                if result["routed"]["feasible"]:
                    pools = {t: self.pool(t, chosen[t], d["replicas"]) for t, d in ((1, r1), (2, r2)) if d["replicas"] or self.remote(t)}
                    sm = simulate(w, pools, cfg.sim.drain_s).summary(percentiles=(cfg.slo.percentile,))
                    row["routed"] = {k: v for k, v in sm.items() if "_p" in k or k == "unfinished"}
                if result["all_large"]["feasible"]:
                    wl = Workload(w.arrival, np.zeros_like(w.delay), np.full_like(w.tier, 2), w.prompt, w.output, w.warmup, w.seconds)
                    sm = simulate(wl, {2: self.pool(2, big_fit, big["replicas"])}, cfg.sim.drain_s).summary(
                        percentiles=(cfg.slo.percentile,)
                    )
                    row["all_large"] = {k: v for k, v in sm.items() if "_p" in k or k == "unfinished"}
                load.append(row)
                bar.update(1)
        return {
            "cost_vs_share": cost,
            "all_large_monthly_usd": result["all_large"]["monthly_usd"],
            "latency_vs_load": load,
            "percentile": cfg.slo.percentile,
        }

    def _chosen_fit(self, result: dict, t: int, key: str = "routed") -> Fit | None:
        return self.fit_of(t, result[key]["tier2" if key == "all_large" else f"tier{t}"])

    def fit_of(self, t: int, d: dict) -> Fit | None:
        """The engine a sized tier (as a plan's dict) runs on; None for a remote tier."""
        if self.remote(t):
            return None
        return next(f for f in self.fits[t] if f.node == d["node"] and f.tp == d["tp"])

    def _size_fixed(self, t: int, f: Fit, rate: float, routed: bool) -> TierSize:
        """Replicas of engine ``f`` for ``rate`` (no choice of node type, no confirmation run)."""
        return self.size(t, rate, routed, [f], self.cfg.plot.seconds)[0]

