"""``tierroute loadtest``: the subcommand's arguments and what it runs. ``add_parser(sub)`` adds it to the
``tierroute`` command; ``main()`` runs it alone (``python -m app.loadtest.cli``)."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = (
    "Drive an OpenAI-compatible endpoint (default: the local tierroute graph, `serve run configs/local.yaml`) with a "
    "reproducible request mix from a JSONL file of prompts or messages: open loop at Poisson rates (--rate) or closed "
    "loop at concurrencies (--concurrency), streaming or not, each load level bounded by --requests and --duration. "
    "Reports per tier and overall: throughput, p50/p95/p99 end-to-end latency and time to first token (--stream), "
    "output tokens/s, the tier split and errors by kind; --compare runs 'everything to tier 2' and 'routed' on the "
    "same mix at each level, interleaved, side by side (with --cascade also the endpoint's cascade: per path, escalation "
    "share, tier-1 tokens spent on escalated requests); --route-capacity adds the router's own cost (/v1/route vs. "
    "/healthz: decisions per second per core). Results as JSON (--json) and a PNG (--plot)."
)


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("loadtest", help="load-test an OpenAI-compatible endpoint: latency, TTFT, throughput, tier split",
                       description=DESCRIPTION)  # fmt: skip
    p.add_argument("--url", default="http://127.0.0.1:8000", help="base URL of the endpoint (default %(default)s, the local default)")
    p.add_argument("--input", required=True, help="JSONL, one {'prompt': ...} or {'messages': [...]} per line (e.g. a traffic log)")
    p.add_argument("--limit", type=int, help="use only the first N requests of the shuffled mix")
    p.add_argument("--seed", type=int, default=0, help="seed of the mix's shuffle and the Poisson arrivals (default 0)")
    p.add_argument("--skip-invalid", action="store_true", help="skip invalid input lines instead of stopping")
    p.add_argument("--max-tokens", type=int, default=64, help="max_tokens of every request (default %(default)s)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--rate", metavar="R[,R2,...]", help="open loop: Poisson arrivals at R requests/s; a list sweeps the load")
    mode.add_argument("--concurrency", metavar="C[,C2,...]", help="closed loop: C requests in flight; a list sweeps the load")
    p.add_argument("--requests", type=int, default=100, help="at most N requests per load level and arm (default %(default)s)")
    p.add_argument("--duration", type=float, default=60.0, help="send for at most S seconds per load level and arm (default %(default)s)")
    p.add_argument("--max-outstanding", type=int, default=256,
                   help="open loop: an arrival that finds this many requests in flight is dropped and counted (default %(default)s)")  # fmt: skip
    p.add_argument("--stream", action="store_true", help="stream the answers (SSE) and measure time to first token")
    p.add_argument("--model", default="auto", help="the model asked for: the router's name routes (default %(default)s)")
    p.add_argument("--compare", action="store_true",
                   help="run 'everything to tier 2' (--tier2-model) and 'routed' (--model) on the same mix at each level")  # fmt: skip
    p.add_argument("--cascade", action="store_true",
                   help="with --compare: a third arm, the endpoint's cascade (its routing.mode cascade or cascade_routing); the routed "
                   "arm of --compare always opts out of a cascade per request (x-tierroute-cascade: off)")  # fmt: skip
    p.add_argument("--tier2-model", help="with --compare: tier 2's model id (default: the one /v1/models lists as tier 2)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds one request may take (default %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="requests sent one at a time per arm before measuring (default %(default)s)")
    p.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the API key (sent as a Bearer token)")
    p.add_argument("--json", dest="json_out", metavar="OUT.json", help="write the full results as JSON here")
    p.add_argument("--plot", dest="plot_out", metavar="OUT.png", help="write latency percentiles vs. load and the tier split as a PNG")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    cap = p.add_argument_group("router capacity")
    cap.add_argument("--route-capacity", action="store_true",
                     help="also measure the router's own cost: /v1/route (a decision, no generation) vs. /healthz on the same ingress "
                     "(alone, without --rate/--concurrency: only that)")  # fmt: skip
    cap.add_argument("--route-concurrency", type=int, default=32, help="concurrency of that measurement (default %(default)s)")
    cap.add_argument("--route-requests", type=int, default=500, help="requests per endpoint and round (default %(default)s)")
    cap.add_argument("--route-rounds", type=int, default=2, help="interleaved rounds; figures are medians (default %(default)s)")
    cap.add_argument("--router-cores", type=float,
                     help="CPU cores the ingress and embedder are given, for decisions/s per core (default: the host's, for a loopback URL)")  # fmt: skip
    p.set_defaults(command="loadtest")
    return p


FIELDS = ("url", "input", "limit", "seed", "skip_invalid", "max_tokens", "requests", "duration", "max_outstanding", "stream",
          "model", "compare", "cascade", "tier2_model", "timeout", "warmup", "json_out", "plot_out", "progress", "route_capacity",
          "route_concurrency", "route_requests", "route_rounds", "router_cores")  # fmt: skip


def config_of(args):
    from app.feedback.endpoint import api_key_from_env
    from app.loadtest.config import make_config

    fields = {f: getattr(args, f) for f in FIELDS}
    fields["rates"], fields["concurrencies"] = args.rate, args.concurrency
    fields["api_key"] = api_key_from_env(args.api_key_env)
    return make_config(**{k: v for k, v in fields.items() if v is not None})


def run(args, transport=None) -> int:
    """Run the load test; 0 when every request succeeded, 1 when some failed or were dropped.
    ``transport``: an httpx transport in place of the network (tests)."""
    from app.loadtest.report import text_report, write_json
    from app.loadtest.session import run as run_session

    cfg = config_of(args)
    results = run_session(cfg, log=lambda m: print(m, file=sys.stderr), transport=transport)
    print(text_report(results))
    if cfg.json_out:
        print(f"wrote {write_json(results, cfg.json_out)}", file=sys.stderr)
    if cfg.plot_out:
        from app.loadtest.plot import plot_results

        print(f"wrote {plot_results(results, cfg.plot_out)}", file=sys.stderr)
    failed = sum(s["overall"]["errors"] + s["dropped"] for lv in results["levels"] for s in lv["arms"].values())
    return 0 if failed == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tierroute")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError) as e:  # as the tierroute command: usage and input errors exit 2
        print(f"tierroute loadtest: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
