"""Figures of one level run, per tier (or answering model) and overall.

Cascades: the count of each path the endpoint reported, latency per path, the escalation share (escalated
over successful requests that reported a path; None when none did) and the tier-1 tokens spent on escalated
requests (None when the endpoint did not report them).

Throughput and tokens/s are over the level's wall time (first send to last answer), so the groups' figures
add up to the overall one. Latency percentiles are over successful requests only (numpy, linear interpolation).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from app.loadtest.client import Outcome
from app.loadtest.runner import LevelRun

PCTS = (50, 95, 99)


def percentiles_ms(seconds: list[float]) -> dict[str, float | None]:
    """``{"p50": ms, "p95": ms, "p99": ms}``; None each when there is no sample."""
    if not seconds:
        return {f"p{p}": None for p in PCTS}
    values = np.percentile(np.asarray(seconds, dtype=float) * 1000.0, PCTS)
    return {f"p{p}": round(float(v), 2) for p, v in zip(PCTS, values)}


def group_stats(outcomes: list[Outcome], wall_s: float) -> dict[str, Any]:
    ok = [o for o in outcomes if o.ok]
    tokens = [o.completion_tokens for o in ok if o.completion_tokens is not None]
    ttft = [o.ttft_s for o in ok if o.ttft_s is not None]
    router = [o.router_ms / 1000.0 for o in ok if o.router_ms is not None]
    per_s = (lambda x: round(x / wall_s, 3)) if wall_s > 0 else (lambda x: 0.0)
    return {
        "requests": len(outcomes),
        "ok": len(ok),
        "errors": len(outcomes) - len(ok),
        "throughput_rps": per_s(len(ok)),
        "e2e_ms": percentiles_ms([o.e2e_s for o in ok]),
        "ttft_ms": percentiles_ms(ttft),
        "output_tokens": int(sum(tokens)),
        "output_tokens_per_s": per_s(sum(tokens)),
        "router_ms": percentiles_ms(router),
        "errors_by_kind": dict(Counter(o.error for o in outcomes if not o.ok)),
    }


def summarize(run: LevelRun) -> dict[str, Any]:
    """The run's overall figures, per group, the tier split of successful requests, drops and errors by kind."""
    groups: dict[str, list[Outcome]] = {}
    for o in run.outcomes:
        g = o.group()
        if g is not None:
            groups.setdefault(g, []).append(o)
    ok_total = sum(o.ok for o in run.outcomes)
    by_path: dict[str, list[Outcome]] = {}
    for o in run.outcomes:
        if o.ok and o.path is not None:
            by_path.setdefault(o.path, []).append(o)
    split = {g: round(sum(o.ok for o in os) / ok_total, 4) if ok_total else 0.0 for g, os in sorted(groups.items())}
    return {
        "arm": run.arm,
        "loop": run.loop,
        "load": run.load,
        "sent": len(run.outcomes),
        "dropped": run.dropped,
        "wall_s": round(run.wall_s, 3),
        "overall": group_stats(run.outcomes, run.wall_s),
        "by_tier": {g: group_stats(os, run.wall_s) for g, os in sorted(groups.items())},
        "tier_split": split,
        "paths": {p: len(os) for p, os in sorted(by_path.items())},
        "by_path": {p: group_stats(os, run.wall_s) for p, os in sorted(by_path.items())},
        **cascade_figures(run.outcomes),
    }


def cascade_figures(outcomes: list[Outcome]) -> dict[str, Any]:
    """Escalation share of the successful requests that reported a path, and tier-1 tokens spent on escalated ones."""
    told = [o for o in outcomes if o.ok and o.path is not None]
    escalated = [o for o in told if o.escalated]
    spent = [o.tier1_tokens for o in escalated if o.tier1_tokens is not None]
    scores = [o.verifier_score for o in outcomes if o.ok and o.verifier_score is not None]
    return {
        "escalation_share": round(len(escalated) / len(told), 4) if told else None,
        "escalated": len(escalated),
        "tier1_tokens_on_escalated": int(sum(spent)) if spent else None,
        "tier1_tokens_per_escalated": round(sum(spent) / len(spent), 1) if spent else None,
        "verifier_score_mean": round(float(np.mean(scores)), 4) if scores else None,
    }
