"""The plan as a readable text table (stdout) and as JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

from app.files import write_atomic


def _usd(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"${x:,.0f}"


def _s(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x * 1e3:.0f} ms" if x < 1 else f"{x:.2f} s"


def fit_table(plan: dict) -> list[str]:
    lines = ["Fit per node type (per GPU: weights/TP + reserve vs usable memory; KV cache must hold max_model_len)",
             f"  {'tier':<5} {'node':<13} {'TP':>2}  {'fits':<4} {'rep/node':>8} {'max seqs':>8} {'KV tokens':>10}  reason"]  # fmt: skip
    for t in ("tier1", "tier2"):
        if (plan.get("models") or {}).get(t, {}).get("remote"):
            lines.append(f"  {t[-1]:<5} remote: {plan['models'][t]['name']} (no nodes; priced per token)")
        for f in plan["fits"][t]:
            lines.append(
                f"  {t[-1]:<5} {f['node']:<13} {f['tp']:>2}  {'yes' if f['fits'] else 'NO':<4} {f['replicas_per_node']:>8} "
                f"{f['max_seqs']:>8} {f['kv_tokens']:>10}  {'' if f['fits'] else f['reason']}"
            )
    return lines


def _tier_line(label: str, d: dict | None) -> str:
    if d is None:
        return f"  {label:<22} does not fit any node type"
    if d.get("remote"):
        tokens = f"{d['input_tokens_per_month'] / 1e6:,.0f}M in + {d['output_tokens_per_month'] / 1e6:,.0f}M out"
        return (
            f"  {label:<22} {d['rate_rps']:7.1f} req/s  remote {d['model']}: {tokens} tokens/month at "
            f"${d['input_usd_per_1m']:g} / ${d['output_usd_per_1m']:g} per 1M  {_usd(d['monthly_usd']):>10}/month"
        )
    if not d["feasible"]:
        return f"  {label:<22} {d['node']} TP{d['tp']}: INFEASIBLE: {d['reason']}"
    return (
        f"  {label:<22} {d['rate_rps']:7.1f} req/s  {d['node']:<13} TP{d['tp']}  {d['replicas']:>3} replicas "
        f"({d['max_seqs']} seqs each) on {d['nodes']:>3} nodes  {_usd(d['monthly_usd']):>10}/month"
    )


def text(plan: dict) -> str:
    sc, r, b = plan["scenario"], plan["routed"], plan["all_large"]
    slo = sc["slo"]
    bounds = ", ".join(f"{k[:-2]} <= {v:g} s" for k, v in slo.items() if k.endswith("_s") and v is not None)
    out = [
        f"Scenario: {sc['mean_rps']:g} req/s mean x peak factor {sc['peak_factor']:g} = {sc['peak_rps']:g} req/s at peak; "
        f"tier-2 share {100 * sc['tier2_share']:.1f}% ({sc['share_source']})",
        f"  prompt tokens: tier 1 {sc['prompt_tokens']['tier1']}; tier 2 {sc['prompt_tokens']['tier2']} ({sc['prompt_source']})",
        f"  output tokens: {sc['output_tokens']}",
        f"  objective: p{slo['percentile']:g} {bounds} (client side, router included); {sc['sim']['seconds']:g} s simulated per run",
        "",
        *fit_table(plan),
        "",
        "Nodes at peak (fewest replicas meeting the objective in simulation; on-demand x 730 h)"
        + ("; remote tiers: tokens of the mean traffic x price" if any(plan["models"][t].get("remote") for t in ("tier1", "tier2")) else ""),
        _tier_line("routed: tier 1", r["tier1"]),
        _tier_line("routed: tier 2", r["tier2"]),
        f"  {'routed: router':<22} {r['router']['nodes']} x {r['router']['node']}{'':>40}{_usd(r['router']['monthly_usd']):>10}/month",
        f"  {'routed: total':<22} {_usd(r['monthly_usd']) + '/month' if r['feasible'] else 'n/a (a tier cannot meet the objective)'}",
        _tier_line("all-tier-2", b["tier2"]),
        f"  saving: {_usd(plan['saving']['monthly_usd'])}/month ({_pct(plan['saving']['fraction'])})"
        if r["feasible"] and b["feasible"]
        else "  saving: n/a",
        "",
        f"Simulated latency at peak (client side; {sc['peak_rps']:g} req/s)",
        f"  {'':<16} {'TTFT p50':>9} {'p95':>8} {'p99':>8}   {'e2e p50':>8} {'p95':>8} {'p99':>8}   {'TPOT p50':>8} {'p99':>8}  unfinished",
    ]
    rows = []
    if r["sim"]:
        rows += [("routed", r["sim"]["all"]), ("  tier 1", r["sim"]["tier1"]), ("  tier 2", r["sim"]["tier2"])]
    if b["sim"]:
        rows.append(("all-large", b["sim"]["all"]))
    c = plan.get("cascade")
    if c and c["sim"]:
        label = "cascade" if c["mode"] == "cascade" else "casc.routing"
        rows += [(label, c["sim"]["all"])] + [(f"  {p}", c["sim"][p]) for p in ("tier1", "direct", "escalated") if c["sim"][p]["requests"]]
    out += [_latency_row(name, s) for name, s in rows]
    if c:
        out += ["", *cascade_lines(plan)]
    warn = remote_warnings(plan)
    if warn:
        out += ["", "Remote tiers", *warn]
    return "\n".join(out)


def remote_warnings(plan: dict) -> list[str]:
    """Per remote tier of each topology: its rate limit against the demand (what would be throttled), and its latency
    against the objective (a remote tier has no replicas to add)."""
    out = []
    tops = [("routed", plan["routed"], ("tier1", "tier2")), ("all-tier-2", plan["all_large"], ("tier2",))]
    if plan.get("cascade"):
        tops.append((plan["cascade"]["mode"], plan["cascade"], ("tier1", "tier2")))
    for name, top, tiers in tops:
        for t in tiers:
            d = top.get(t)
            if not d or not d.get("remote"):
                continue
            label = f"{name}: tier {t[-1]} ({d['model']})"
            lim, peak, mean = d["rate_limit"], d["at_peak"], d["at_mean"]
            if lim is None:
                out.append(f"  {label}: no rate limit set; demand at peak {peak['requests_per_minute']:,.0f} req/min, "
                           f"{peak['tokens_per_minute']:,.0f} tokens/min")  # fmt: skip
            else:
                limits = ", ".join(f"{v:,.0f} {k.replace('_per_minute', '')}/min" for k, v in lim.items() if v)
                state = "WARNING: over the rate limit" if peak["throttled_share"] > 0 else "within the rate limit"
                out.append(
                    f"  {label}: {state} ({limits}): demand at peak {peak['requests_per_minute']:,.0f} req/min, "
                    f"{peak['tokens_per_minute']:,.0f} tokens/min; would be throttled {_pct(peak['throttled_share'])} at peak, "
                    f"{_pct(mean['throttled_share'])} at the mean"
                )
            if "misses" in d["reason"]:
                obs = ", ".join(f"{k} {v:.3g}" for k, v in d["observed_at_slo_percentile"].items())
                out.append(f"  {label}: WARNING: its latency misses the objective ({obs}); no replicas to add")
    return out


def _latency_row(name: str, s: dict) -> str:
    return (
        f"  {name:<16} {_s(s['ttft_p50']):>9} {_s(s['ttft_p95']):>8} {_s(s['ttft_p99']):>8}   {_s(s['e2e_p50']):>8} "
        f"{_s(s['e2e_p95']):>8} {_s(s['e2e_p99']):>8}   {_s(s['tpot_p50']):>8} {_s(s['tpot_p99']):>8}  {s['unfinished']}/{s['requests']}"
    )


def cascade_lines(plan: dict) -> list[str]:
    """Route vs cascade at the given shares: requests each tier serves, nodes, cost."""
    c, r, sc = plan["cascade"], plan["routed"], plan["scenario"]
    ld = c["loads"]
    share = f"escalation share {100 * c['escalation_share']:.1f}% of tier 1's answers"
    if c["mode"] == "cascade_routing":
        share = f"direct share {100 * c['direct_share']:.1f}%, " + share
    out = [
        f"Route vs {c['mode']} ({share}; shares are inputs, not predictions)",
        f"  per request: routed tier 1 {1 - sc['tier2_share']:.3f} + tier 2 {sc['tier2_share']:.3f}; "
        f"{c['mode']} tier 1 {ld['tier1']:.3f} + tier 2 {ld['tier2']:.3f} (direct {ld['direct']:.3f}, escalated {ld['escalated']:.3f})",
        f"  tier-1 tokens spent on escalated requests: {c['tier1_tokens_on_escalated_per_request']:g} per request on average",
        _tier_line(f"{c['mode']}: tier 1", c["tier1"]),
        _tier_line(f"{c['mode']}: tier 2", c["tier2"]),
        f"  {'totals (with router)':<22} routed {_usd(r['monthly_usd'])}/month, {c['mode']} {_usd(c['monthly_usd'])}/month "
        f"({_usd_k(c['per_1k_requests_usd'])} per 1k requests), all tier 2 {_usd(plan['all_large']['monthly_usd'])}/month; "
        f"{c['mode']} saves {_pct(c['saving_vs_all_large'])} vs all tier 2",
    ]
    slo, sim = sc["slo"], c["sim"]
    col = "p99" if slo["percentile"] >= 99 else "p95"  # of the table's columns, the nearest below the objective's
    for k, bound in (("ttft", slo["ttft_s"]), ("e2e", slo["e2e_s"])):
        got = sim["all"][f"{k}_{col}"] if sim else None
        if sim and sim["escalated"]["requests"] and bound is not None and got is not None and got > bound:
            out.append(
                f"  client-side {k} {col} of the cascade, {_s(got)}, is over the objective's {bound:g} s: escalated requests wait "
                "for tier 1's whole answer (buffer mode) before tier 2 starts; replicas do not change that (each tier is sized "
                "to the objective for its own part)"
            )
    return out


def _usd_k(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"${x:.3f}"


def _pct(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.0f}%"


def _clean(x):
    """NaN (a cost or saving of an infeasible topology) as null: the file stays strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def write_json(plan: dict, path: str | Path) -> None:
    write_atomic(path, [json.dumps(_clean(plan), indent=1, allow_nan=False), "\n"])
