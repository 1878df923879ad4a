"""The ladder evaluation's figures and their text: the cost to reach a share of the top tier's quality, and the
held-out quality at a budget, each with a 90% bootstrap interval over prompts (the routes fixed, the prompts
resampled; the same resamples for every router, so the ladder's difference from the best two-tier sub-ladder
is paired). A cost to reach is the minimum over a curve, a jumpy statistic: its percentile interval (over the
resamples in which the target is reached at all) need not contain the point estimate.
"""

from __future__ import annotations

import numpy as np

from app.calibration.ladder_eval import BUDGETS, Served

FRACS = (1.0, 0.99, 0.95)  # targets: these shares of the top tier's quality
AT_BUDGETS = (0.1, 0.2, 0.3, 0.5)  # budgets (relative to all top tier) the quality table reads


def cost_to_reach(s: Served, ref_cost: np.ndarray, top_q: np.ndarray, frac: float, idx: np.ndarray) -> float | None:
    """The lowest relative cost at which ``s`` reaches ``frac`` x the top tier's quality on rows ``idx`` (None: never)."""
    cost, q = s.curve(ref_cost, idx)
    ok = q >= frac * top_q[idx].mean() - 1e-12
    return float(cost[ok].min()) if ok.any() else None


def interval(values: np.ndarray, level: float = 0.90) -> tuple[float, float]:
    v = values[~np.isnan(values)]
    if not len(v):
        return float("nan"), float("nan")
    lo, hi = np.quantile(v, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def reach_table(served: dict[str, Served], ladder: str, subs: list[str], ref_cost, top_q, fracs=FRACS, n_boot: int = 1000, seed: int = 0) -> dict:
    """Per target (a share of the top tier's quality): each curve's cost to reach it with a 90% bootstrap interval and
    the share of resamples in which it does, and the ladder's paired difference from the best two-tier sub-ladder."""
    n = len(ref_cost)
    rng = np.random.default_rng(seed)
    samples = [rng.integers(0, n, n) for _ in range(n_boot)]
    out = {}
    full = np.arange(n)
    for frac in fracs:
        row: dict = {}
        for name, s in served.items():
            point = cost_to_reach(s, ref_cost, top_q, frac, full)
            boots = np.array([np.nan if (c := cost_to_reach(s, ref_cost, top_q, frac, i)) is None else c for i in samples])
            lo, hi = interval(boots)
            row[name] = {"cost": point, "low": lo, "high": hi, "reached_share": float(np.mean(~np.isnan(boots)))}
        reached = [x for x in subs if row[x]["cost"] is not None]
        best = min(reached, key=lambda x: row[x]["cost"]) if reached else None
        diff = None
        if best is not None and row[ladder]["cost"] is not None:
            d = []
            for i in samples:
                a, b = cost_to_reach(served[ladder], ref_cost, top_q, frac, i), cost_to_reach(served[best], ref_cost, top_q, frac, i)
                d.append(np.nan if a is None or b is None else a - b)
            lo, hi = interval(np.array(d))
            diff = {"versus": best, "difference": row[ladder]["cost"] - row[best]["cost"], "low": lo, "high": hi}
        out[f"{frac:g}"] = {"curves": row, "best two-tier": best, "ladder minus best two-tier": diff}
    return out



def budget_table(served: dict[str, Served], ladder: str, subs: list[str], ref_cost, at=AT_BUDGETS, n_boot: int = 1000, seed: int = 0) -> dict:
    """Per budget (the knob the thresholds were set for on the training folds): each router's held-out quality with a
    90% bootstrap interval and its held-out cost, and the ladder's paired quality difference from the best two-tier
    sub-ladder at that budget (best by held-out quality: a choice that favours the sub-ladders)."""
    n = len(ref_cost)
    rng = np.random.default_rng(seed + 1)
    samples = [rng.integers(0, n, n) for _ in range(n_boot)]
    out = {}
    for b in at:
        j = int(np.argmin(np.abs(BUDGETS - b)))
        row = {}
        for name, s in served.items():
            q = s.quality[:, j]
            lo, hi = interval(np.array([q[i].mean() for i in samples]))
            row[name] = {"quality": float(q.mean()), "low": lo, "high": hi, "cost": float(s.paid[:, j].sum() / ref_cost.sum())}
        best = max(subs, key=lambda x: row[x]["quality"]) if subs else None
        diff = None
        if best is not None:
            d = served[ladder].quality[:, j] - served[best].quality[:, j]
            lo, hi = interval(np.array([d[i].mean() for i in samples]))
            diff = {"versus": best, "difference": float(d.mean()), "low": lo, "high": hi}
        out[f"{b:g}"] = {"routers": row, "best two-tier": best, "ladder minus best two-tier": diff}
    return out


def _fmt(x: dict) -> str:
    if x["cost"] is None:
        return f"not reached (reached in {100 * x['reached_share']:.0f}% of resamples)"
    return f"{x['cost']:.3f} [{x['low']:.3f}, {x['high']:.3f}]" + ("" if x["reached_share"] > 0.995 else f" (reached in {100 * x['reached_share']:.0f}%)")


def format_source(source: str, res: dict) -> str:
    lines = [f"== {source} (n={res['n']}): ladder {' > '.join(res['tiers'])}"]
    lines.append("fixed tiers (cost relative to all top tier, quality): " + ", ".join(f"{m} {c:.3f}/{q:.3f}" for m, (c, q) in res["fixed"].items()))
    for vname, t in res["by_variant"].items():
        for frac, tab in t["targets"].items():
            lines.append(f"-- {vname}; cost to reach {float(frac):.0%} of the top tier's quality [90% bootstrap interval]:")
            for name, x in tab["curves"].items():
                mark = " <- ladder" if name == t["ladder"] else (" <- best two-tier" if name == tab["best two-tier"] else "")
                lines.append(f"   {name:<70}{_fmt(x)}{mark}")
            d = tab["ladder minus best two-tier"]
            if d:
                lines.append(f"   ladder - best two-tier: {d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]")
        lines.append(f"-- {vname}; held-out quality [90% interval] (held-out cost) with thresholds set on the training folds for a budget:")
        for b, tab in t["at_budget"].items():
            cells = "; ".join(f"{name.rsplit(': ', 1)[-1]} {x['quality']:.3f} [{x['low']:.3f}, {x['high']:.3f}] ({x['cost']:.3f})" for name, x in tab["routers"].items())
            lines.append(f"   budget {float(b):.2f}: {cells}")
            d = tab["ladder minus best two-tier"]
            if d:
                lines.append(f"   budget {float(b):.2f}: ladder - best two-tier ({d['versus'].rsplit(': ', 1)[-1]}): {d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]")
    return "\n".join(lines)


def jsonable(res: dict) -> dict:
    """The report without the per-row arrays, plus each curve's points."""
    out = {k: v for k, v in res.items() if k != "served"}
    return out
