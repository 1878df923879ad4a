"""``tierroute plan``: how many GPU nodes each tier needs for your traffic, what they cost routed vs. all on tier 2,
and the latency both give, from a roofline model of the engines and a discrete-event simulation.

The top-level CLI calls ``add_parser(sub)`` and ``run(args)``; ``main(argv)`` runs it standalone
(``python -m app.plan.cli``). User errors are ValueError naming the flag or the config field.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

DESCRIPTION = (
    "Capacity and cost planner. Per tier: which GPU node types the model fits (weights / tensor parallel + reserve vs "
    "memory, KV cache), the fewest replicas that meet the latency objective at peak load in a discrete-event "
    "simulation of continuous-batching engines (step time from a bandwidth/compute roofline), and the monthly "
    "on-demand cost of the routed topology (tier 1 + tier 2 + router) vs. sending everything to tier 2; then the "
    "latency percentiles of both. Inputs: a YAML/JSON config (defaults: Llama-3.1-8B AWQ-INT4 and Llama-3.1-70B FP8 "
    "on AWS g6e, see configs/plan.yaml), flags override it. The tier-2 share: --split, or --scored with the output of "
    "`tierroute score` on your traffic. --mode cascade / cascade_routing also plans the cascade (tier 1 answers, "
    "--escalation of its answers go on to tier 2; cascade_routing: --direct straight to tier 2) beside the routed topology. "
    "A tier may be remote (a hosted endpoint: tierN.remote with prices per 1M input/output tokens, latency and an "
    "optional rate limit): it sizes no nodes and costs its mean traffic's tokens (docs/planning.md, remote tiers)."
)


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("plan", help="GPU nodes, monthly cost and simulated latency: routed vs. all on tier 2", description=DESCRIPTION)
    _arguments(p)
    return p


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML or JSON planner config (default: the built-in defaults; see configs/plan.yaml)")
    p.add_argument("--rps", type=float, help="mean requests/s (traffic.rps)")
    p.add_argument("--peak-factor", type=float, help="diurnal peak / mean (traffic.peak_factor); nodes are sized for the peak")
    share = p.add_mutually_exclusive_group()
    share.add_argument("--split", type=float, help="tier-2 share, 0-1 (split.tier2_share)")
    share.add_argument(
        "--scored",
        help="JSONL written by `tierroute score` on your traffic: the tier-2 share and each tier's prompt lengths come from it",
    )
    p.add_argument("--traffic", help="JSONL of your prompts (as `score` reads): prompt lengths from it (characters / traffic.chars_per_token)")
    p.add_argument("--mode", choices=("route", "cascade", "cascade_routing"),
                   help="routing.mode: route (default), or plan a cascade beside the routed topology (see docs/planning.md)")  # fmt: skip
    p.add_argument("--escalation", type=float, help="cascades: share of tier 1's answers escalated to tier 2, 0-1 (routing.escalation_share)")
    p.add_argument("--direct", type=float, help="cascade_routing: share of requests sent straight to tier 2, 0-1 (routing.direct_share)")
    p.add_argument("--ttft", type=float, help="objective: time to first token, seconds (slo.ttft_s)")
    p.add_argument("--tpot", type=float, help="objective: time per output token, seconds (slo.tpot_s)")
    p.add_argument("--e2e", type=float, help="objective: request latency, seconds (slo.e2e_s)")
    p.add_argument("--percentile", type=float, help="objective percentile (slo.percentile, default 99)")
    p.add_argument("--seconds", type=float, help="simulated seconds of arrivals per run (sim.seconds)")
    p.add_argument("--seed", type=int, help="simulation seed (sim.seed)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override any config field, e.g. --set tier2.engine.max_num_seqs=128 (repeatable; VALUE is YAML)")
    p.add_argument("--fit-only", action="store_true", help="print which node types each tier fits and stop (no simulation)")
    p.add_argument("--json", help="write the full plan as JSON here")
    p.add_argument("--plot", help="write a PNG here: cost vs tier-2 share, p99 TTFT and latency vs load (more simulation)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


FLAG_FIELDS = {
    "rps": "traffic.rps", "peak_factor": "traffic.peak_factor", "split": "split.tier2_share", "ttft": "slo.ttft_s",
    "mode": "routing.mode", "escalation": "routing.escalation_share", "direct": "routing.direct_share",
    "tpot": "slo.tpot_s", "e2e": "slo.e2e_s", "percentile": "slo.percentile", "seconds": "sim.seconds", "seed": "sim.seed",
}  # fmt: skip


def overrides_from(args) -> dict:
    out = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE, e.g. traffic.rps=200")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ValueError(f"--set {item!r}: VALUE is not valid YAML: {e}") from None
    for flag, field in FLAG_FIELDS.items():
        v = getattr(args, flag)
        if v is not None:
            out[field] = v
    return out


def run(args) -> int:
    from app.plan import report
    from app.plan.config import load_config
    from app.plan.planner import Planner, make_inputs

    if args.split is not None and not 0.0 <= args.split <= 1.0:
        raise ValueError(f"--split must be between 0 and 1, got {args.split}")
    for flag in ("scored", "traffic"):
        path = getattr(args, flag)
        if path and not Path(path).is_file():
            raise ValueError(f"--{flag} {path}: no such file")
    if args.scored and args.traffic:
        raise ValueError("--scored already gives the prompts; use --traffic only with --split or the config's split")
    cfg = load_config(args.config, overrides_from(args))
    inputs = make_inputs(cfg, args.scored, args.traffic)
    planner = Planner(cfg, inputs, progress=not args.no_progress)
    if args.fit_only:
        print("\n".join(report.fit_table({"fits": {f"tier{t}": [f.to_dict() for f in planner.fits[t]] for t in (1, 2)}})))
        return 0
    plan = planner.plan()
    feasible = plan["routed"]["feasible"] and plan["all_large"]["feasible"] and plan.get("cascade", {}).get("feasible", True)
    if args.plot:
        if not feasible:
            print("tierroute plan: no plot: a topology has no feasible size", file=sys.stderr)
        else:
            from app.plan.plot import plot

            plan["curves"] = planner.curves(plan)
            if "cascade" in plan:
                from app.plan.cascade import cascade_curves

                plan["curves"]["cascade"] = cascade_curves(planner, plan)
            sc = plan["scenario"]
            title = f"{sc['peak_rps']:g} req/s peak, tier-2 share {100 * sc['tier2_share']:.0f}%"
            if "cascade" in plan:
                c = plan["cascade"]
                title += f"; {c['mode']}: escalation {100 * c['escalation_share']:.0f}%, direct {100 * c['direct_share']:.0f}%"
            plot(plan["curves"], args.plot, title, plan)
    print(report.text(plan))
    if args.json:
        report.write_json(plan, args.json)
    if args.json or args.plot:
        print("wrote " + ", ".join(x for x in (args.json, args.plot) if x), file=sys.stderr)
    return 0 if feasible else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tierroute plan", description=DESCRIPTION)
    _arguments(p)
    args = p.parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError) as e:
        print(f"tierroute plan: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
