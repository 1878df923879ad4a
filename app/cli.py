"""The ``tierroute`` command line: calibrate, evaluate, score, label, route, demo, loadtest, plan."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from app.routing.endpoint import api_key_from_env

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEMO_PROMPTS = [
    "I was charged twice for my order #4411, can you help?",
    "Convert this to JSON: name=Ada, role=admin, active=yes",
    "What does HTTP status 404 mean?",
    "Prove that the square root of 2 is irrational.",
    "Refactor this function to avoid the N+1 query and explain the trade-offs:\n"
    "def totals(users):\n    return {u.id: sum(o.amount for o in Order.objects.filter(user=u)) for u in users}",
    "A train leaves at 3:40 pm at 48 mph; a second leaves the same station at 4:10 pm at 60 mph on the "
    "same track. At what time does the second catch the first, and how far from the station?",
]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tierroute",
        description="Complexity-based LLM routing: score prompts and send each to the cheapest tier that answers it well.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def artifact_arg(sp):
        sp.add_argument("--artifact", help="calibration artifact (default: the one shipped with tierroute)")

    c = sub.add_parser(
        "calibrate",
        help="build a calibration artifact from labelled prompts",
        description="Embed labelled prompts; per kind of traffic (each source with outcomes, and 'chat' for label-only "
        "sources) choose an expert (prompt length, logistic regression, topic rates+length, kNN+length) by cross-validation, preferring the "
        "simpler one, calibrate it to P(needs the large model), fit a gate between kinds, report nested cross-validated "
        "figures per source beside prompt length and random, and set the threshold on a stated traffic mix or on your "
        "own traffic (--traffic). Data: a directory laid out like ../shared/data, or JSONL/CSV files with 'prompt' "
        "(or 'messages') and weak/strong outcome columns or a simple/complex 'label'.",
    )
    c.add_argument("--data", nargs="+", required=True, help="labelled data: directories and/or .jsonl/.csv files")
    c.add_argument("--exemplars", nargs="*", default=[], help="extra files labelled simple/complex (e.g. your own traffic)")
    target = c.add_mutually_exclusive_group()
    target.add_argument("--tier2-share", type=float, help="target share of tier-2 traffic (default 0.15)")
    target.add_argument("--recover", type=float, help="instead: smallest tier-2 share that recovers this share of the quality gap")
    c.add_argument(
        "--min-source-share",
        type=float,
        default=0.0,
        help="on the calibration mix: lower the threshold where needed so that every source gets at least this tier-2 "
        "share (the default artifact uses 0.08); not with --traffic",
    )
    c.add_argument(
        "--traffic",
        help="your own unlabelled traffic (JSONL of prompts or messages, as `score` reads): set the threshold so that "
        "--tier2-share of it goes to tier 2, instead of on the calibration mix",
    )
    c.add_argument("--output", required=True, help="where to write the artifact (JSON)")
    c.add_argument("--embedding-model", default=None, help="sentence-transformers model id or path (default all-MiniLM-L6-v2)")
    c.add_argument("--prefix", default="", help="task prefix for the embedding model, e.g. 'classification: '")
    c.add_argument("--family", choices=["length", "logistic", "topic", "knn"], help="force one expert family for every kind")
    c.add_argument(
        "--label-prior", type=float, default=0.15,
        help="label-only kinds (simple/complex exemplars) have no outcome rate: their mean P(needs the large model) (default 0.15)",
    )  # fmt: skip
    c.add_argument("--weak-col", help="column of the weak model's outcome (with --strong-col)")
    c.add_argument("--strong-col", help="column of the strong model's outcome")
    c.add_argument("--folds", type=int, default=5, help="outer folds of the nested cross-validation (inner: one fewer)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="repeat the nested cross-validation on this many outer splits (seeds --seed, --seed+1, ...) and report the mean "
        "and each repeat's figure: on a few hundred rows one split's figure moves by several points",
    )
    h = c.add_argument_group(
        "router-LLM hybrid",
        "rate prompts with outcomes through --endpoint with the serving prompt and fit the band, the LLM's weight and "
        "centre by cross-validated APGR (weight 0 when the ratings add nothing); without --router-llm the artifact "
        "keeps unfitted defaults and says so",
    )
    h.add_argument("--router-llm", metavar="MODEL_ID", help="the router LLM's model id at --endpoint")
    h.add_argument("--endpoint", help="OpenAI-compatible base URL serving --router-llm (e.g. vllm serve, or a tierroute tier)")
    h.add_argument("--router-llm-limit", type=int, default=600, help="rate at most this many prompts with outcomes, each source alike (default 600)")
    h.add_argument("--rating-cache", help="JSONL cache of ratings (default: <output>.ratings.jsonl); reruns ask only for what is missing")
    h.add_argument("--api-key-env", help="environment variable holding the endpoint's API key")
    h.add_argument("--concurrency", type=int, default=4, help="concurrent rating requests")

    e = sub.add_parser(
        "evaluate",
        help="APGR / CPT of the router vs. random and prompt-length baselines, with a plot",
        description="Route labelled prompts with an artifact; report APGR, CPT(50%%), CPT(80%%) per source beside the "
        "random and prompt-length baselines, the tier split, quality and cost at the artifact's threshold, "
        "and write one PNG of quality vs. tier-2 calls per source. Or, with --outcomes, the router's quality in "
        "production from shadow-evaluation logs: the share of tier-1 answers judged as good as tier 2's, and of "
        "tier-2 requests tier 1 would have served.",
    )
    what = e.add_mutually_exclusive_group(required=True)
    what.add_argument("--data", nargs="+", help="labelled data with weak/strong outcomes")
    what.add_argument("--outcomes", nargs="+", metavar="LOG", help="shadow outcome logs (JSONL files, or a directory of them)")
    artifact_arg(e)
    e.add_argument("--plot-dir", default="eval-plots", help="folder for the PNG plots (default ./eval-plots)")
    e.add_argument("--cost-tier1", type=float, default=1.0, help="relative cost of one tier-1 request")
    e.add_argument("--cost-tier2", type=float, default=10.0, help="relative cost of one tier-2 request")
    e.add_argument("--json", help="also write the full report as JSON here")
    e.add_argument("--weak-col")
    e.add_argument("--strong-col")

    s = sub.add_parser(
        "score",
        help="score a JSONL traffic log in batch (adds 'score' and 'tier' to each line)",
        description="Each input line is {\"prompt\": ...} or {\"messages\": [...]} with any other fields; each output "
        "line is that object with 'score' (0-1) and 'tier' (1|2), in input order. A malformed line is an error "
        "naming its line number and nothing is written, unless --skip-invalid.",
    )
    s.add_argument("--input", required=True)
    s.add_argument("--output", required=True)
    artifact_arg(s)
    s.add_argument("--skip-invalid", action="store_true", help="report and skip malformed lines instead of failing")
    s.add_argument("--batch-size", type=int, default=32, help="embedding batch size")

    lb = sub.add_parser(
        "label",
        help="label a traffic sample with your own tiers' answers and a judge (rows calibrate reads)",
        description="For each prompt of a JSONL traffic sample ({\"prompt\": ...} or {\"messages\": [...]}): the tier-1 and "
        "tier-2 answers from an OpenAI-compatible endpoint and a judge's pairwise verdict in both orders. Rows are "
        "appended as they finish; a rerun skips what is done. Prints a token estimate first.",
    )
    lb.add_argument("--input", required=True, help="traffic sample (JSONL)")
    lb.add_argument("--output", required=True, help="outcome rows (JSONL, appended; resumable)")
    lb.add_argument("--endpoint", default="http://127.0.0.1:8000", help="OpenAI-compatible base URL (a tierroute graph: tiers by model id)")
    lb.add_argument("--tier1", required=True, help="model id of tier 1")
    lb.add_argument("--tier2", required=True, help="model id of tier 2")
    lb.add_argument("--judge", help="model id of the judge (default: --tier2)")
    lb.add_argument("--api-key-env", help="environment variable holding the API key to send")
    lb.add_argument("--limit", type=int, help="label at most the first N prompts")
    lb.add_argument("--concurrency", type=int, default=4)
    lb.add_argument("--max-tokens", type=int, default=256, help="per answer")
    lb.add_argument("--tier1-price", type=float, default=0.10, help="per million tokens, for the estimate")
    lb.add_argument("--tier2-price", type=float, default=0.90, help="per million tokens, for the estimate (the judge too)")

    r = sub.add_parser("route", help="route one prompt and print the decision as JSON")
    r.add_argument("prompt", help="the prompt text")
    artifact_arg(r)

    d = sub.add_parser("demo", help="route a few example prompts and print how each is routed")
    artifact_arg(d)

    sh = sub.add_parser(
        "show",
        help="what an artifact is and how far to trust it, per source",
        description="Print an artifact's card: its kinds of traffic and their experts, the threshold and the traffic it was "
        "set on (each source's tier-2 share there), whether the router LLM was fitted, and per source the nested "
        "cross-validated figure beside prompt length and random, with a verdict from the interval of the lift over length.",
    )
    artifact_arg(sh)
    sh.add_argument("--json", action="store_true", help="print the card as JSON instead")

    from app.loadtest import cli as loadtest_cli
    from app.plan import cli as plan_cli

    loadtest_cli.add_parser(sub)
    plan_cli.add_parser(sub)
    return p


def _pair(args) -> tuple[str, str] | None:
    if bool(args.weak_col) != bool(args.strong_col):
        raise ValueError("--weak-col and --strong-col go together")
    return (args.weak_col, args.strong_col) if args.weak_col else None


def _load_data(paths: list[str], pair=None):
    from app.routing.data import Dataset, load

    ds = Dataset([])
    for path in paths:
        ds = ds.extend(load(path, pair))
    return ds


def cmd_calibrate(args) -> int:
    import numpy as np

    from app.routing.batch import read_requests
    from app.routing.calibrate import (
        build_artifact,
        fit_router,
        format_choices,
        format_report,
        nested_cv,
        prepare,
        set_operating_point,
    )
    from app.routing.data import load_file, sha256_file
    from app.routing.embed import DEFAULT_MODEL, Embedder, EmbedderConfig
    from app.routing.router import Router

    for name in ("tier2_share", "recover", "label_prior"):
        v = getattr(args, name)
        if v is not None and not 0.0 < v < 1.0:
            raise ValueError(f"--{name.replace('_', '-')} must be between 0 and 1, got {v}")
    if not 0.0 <= args.min_source_share < 1.0:
        raise ValueError(f"--min-source-share must be in [0, 1), got {args.min_source_share}")
    if args.traffic and args.min_source_share:
        raise ValueError("--min-source-share sets a floor on the calibration mix; --traffic sets the threshold on your traffic instead")
    if args.traffic and args.recover is not None:
        raise ValueError("--traffic sets a tier-2 share on unlabelled traffic; use it with --tier2-share, not --recover")
    if args.repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {args.repeats}")
    if args.folds < 3:
        raise ValueError(f"--folds must be at least 3 (nested: the inner cross-validation uses one fewer), got {args.folds}")
    traffic = read_requests(args.traffic)[1] if args.traffic else None  # fail on a bad file before the long part
    if bool(args.router_llm) != bool(args.endpoint):
        raise ValueError("--router-llm and --endpoint go together")
    if args.router_llm_limit < 50:
        raise ValueError(f"--router-llm-limit must be at least 50, got {args.router_llm_limit}")
    key = api_key_from_env(args.api_key_env)
    ds = _load_data(args.data, _pair(args))
    for path in args.exemplars:
        ds = ds.extend(load_file(path))
    print(f"calibration data: {len(ds)} prompts from {', '.join(ds.sources())}", file=sys.stderr)
    embedder = Embedder(EmbedderConfig(model=args.embedding_model or DEFAULT_MODEL, prefix=args.prefix))
    prepared = prepare(ds, embedder)
    fit = fit_router(prepared, np.arange(len(ds)), args.folds, args.seed, args.family, args.label_prior)
    evaluation = nested_cv(
        prepared, args.folds, args.folds - 1, args.seed, args.family, args.label_prior, plain=fit.choices, repeats=args.repeats
    )
    art = build_artifact(prepared, embedder, fit, evaluation, args.tier2_share, args.recover, args.label_prior, args.min_source_share)
    if traffic is not None:
        scores = Router(art, embedder).score_texts(traffic, progress=True).score
        share = 0.15 if args.tier2_share is None else args.tier2_share
        art = set_operating_point(art, scores, share, f"{args.traffic} (sha256 {sha256_file(Path(args.traffic))[:16]})")
    if args.router_llm:
        art = _fit_hybrid(args, art, prepared, evaluation.oof, key)
    art.save(args.output)
    print(format_choices(fit.choices))
    again = f"; the mean over {args.repeats} outer splits" if args.repeats > 1 else ""
    print(f"\nnested cross-validation (selection and calibration inside the folds{again}) per source:")
    print(format_report(evaluation.report))
    shares = art.operating_point.get("tier2_share_by_source", {})
    print(
        f"\nchosen: {art.build['chosen']}; threshold {art.threshold:.4f} -> {100 * art.tier2_share:.1f}% tier 2 on "
        f"{'your traffic' if traffic is not None else 'the calibration mix'}"
        + (" (" + ", ".join(f"{s} {100 * v:.1f}%" for s, v in shares.items()) + ")" if shares else "")
        + f"; wrote {args.output}"
    )
    return 0


def _fit_hybrid(args, art, prepared, oof, key):
    """The artifact with its router-LLM hybrid fitted on ratings of its outcome rows (``calibrate --router-llm``)."""
    import asyncio

    import numpy as np
    from tqdm import tqdm

    from app.routing.hybrid import fit_hybrid, format_fit, sample_rows
    from app.routing.ratings import RatingCache, rate_texts

    rows = sample_rows(prepared, args.router_llm_limit, args.seed)
    if len(rows) == 0:
        raise ValueError("--router-llm needs calibration data with weak/strong outcomes")
    texts = [prepared.texts[i] for i in rows]
    cache = RatingCache(args.rating_cache or f"{args.output}.ratings.jsonl")
    with tqdm(total=len(texts), desc=f"rating with {args.router_llm}", unit="prompt") as bar:
        ratings, report = asyncio.run(
            rate_texts(texts, args.router_llm, args.endpoint, cache, key, args.concurrency, progress=bar)
        )
    for f in report.failures:
        print(f"rating failed: {f}", file=sys.stderr)
    ok = np.array([r is not None for r in ratings])
    print(f"ratings: {report.cached} cached, {report.rated} new, {report.failed} failed (cache {cache.path})", file=sys.stderr)
    if ok.mean() < 0.9:
        raise ValueError(f"--router-llm {args.router_llm}: {report.failed} of {len(texts)} ratings failed; rerun to retry them")
    rows, r = rows[ok], np.array([x for x in ratings if x is not None])
    hybrid = fit_hybrid(
        prepared, rows, oof[rows], art.quantile_of(oof[rows]), r, float(art.quantile_of(art.threshold)),
        args.router_llm, args.folds, args.seed,
    )  # fmt: skip
    print(format_fit(hybrid))
    return art.model_copy(update={"hybrid": hybrid})


def cmd_evaluate(args) -> int:
    from app.routing.evaluate import evaluate, format_report
    from app.routing.router import Router

    if args.outcomes:
        return _evaluate_outcomes(args)

    ds = _load_data(args.data, _pair(args))
    report = evaluate(Router.load(args.artifact), ds, args.cost_tier1, args.cost_tier2, plot_dir=args.plot_dir)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


def _evaluate_outcomes(args) -> int:
    from app.routing.outcomes import format_outcomes, read_outcomes, summarize_outcomes

    rows, skipped = read_outcomes(args.outcomes)
    if not rows:
        raise ValueError(f"--outcomes: no shadow outcome rows ({skipped} lines that are not)")
    report = summarize_outcomes(rows)
    report["skipped_lines"] = skipped
    print(format_outcomes(report) + (f"\n({skipped} lines skipped: not shadow outcomes)" if skipped else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


def cmd_score(args) -> int:
    from app.routing.batch import score_file
    from app.routing.embed import EmbedderConfig
    from app.routing.router import Router
    from app.routing.artifact import load_artifact

    if not Path(args.input).is_file():
        raise ValueError(f"--input {args.input}: no such file")
    art = load_artifact(args.artifact)
    router = Router.load(
        args.artifact,
        EmbedderConfig(model=art.embedder.model_id, prefix=art.embedder.prefix, batch_size=args.batch_size),
    )
    res = score_file(router, args.input, args.output, skip_invalid=args.skip_invalid)
    for s in res.skipped:
        print(f"skipped {s}", file=sys.stderr)
    share = res.tier2 / res.written if res.written else 0.0
    print(
        f"wrote {res.written} rows to {args.output}: tier 2 {res.tier2} ({100 * share:.1f}%), tier 1 {res.written - res.tier2} "
        f"({100 * (1 - share):.1f}%) at threshold {router.threshold:.4f}; {len(res.skipped)} skipped",
        file=sys.stderr,
    )
    return 0


def cmd_label(args) -> int:
    import asyncio

    from tqdm import tqdm

    from app.routing.label import LabelConfig, Labeler, done_ids, estimate_tokens, load_traffic, repair, row_id

    if not Path(args.input).is_file():
        raise ValueError(f"--input {args.input}: no such file")
    if args.limit is not None and args.limit < 1:
        raise ValueError("--limit must be >= 1")
    key = api_key_from_env(args.api_key_env)
    cfg = LabelConfig(
        endpoint=args.endpoint, tier1_model=args.tier1, tier2_model=args.tier2, judge_model=args.judge, api_key=key,
        max_tokens=args.max_tokens, concurrency=args.concurrency, tier1_price=args.tier1_price, tier2_price=args.tier2_price,
    )  # fmt: skip
    rows, texts = load_traffic(args.input, args.limit)
    out = Path(args.output)
    repair(out)
    done = done_ids(out)
    todo = [t for r, t in zip(rows, texts) if row_id(r) not in done]
    est = estimate_tokens(todo, cfg.max_tokens)
    cost = (est["tier1"] * cfg.tier1_price + (est["tier2"] + est["judge"]) * cfg.tier2_price) / 1e6
    print(
        f"{len(rows)} prompts, {len(rows) - len(todo)} labelled already; to label {len(todo)}: about {est['tier1']:,} tier-1, "
        f"{est['tier2']:,} tier-2 and {est['judge']:,} judge tokens (~{cost:.4f} at the given prices); judge {cfg.judge}",
        file=sys.stderr,
    )
    with tqdm(total=len(todo), desc="labelling", unit="prompt") as bar:
        report = asyncio.run(Labeler(cfg).run(rows, texts, out, progress=bar))
    for f in report.failures[:10]:
        print(f"failed {f}", file=sys.stderr)
    print(f"wrote {report.written} rows to {out} ({report.done_before} done before, {report.failed} failed: rerun to retry them)", file=sys.stderr)
    return 0 if report.failed == 0 else 1


def cmd_route(args) -> int:
    from app.routing.router import Router

    print(Router.load(args.artifact).route(args.prompt).model_dump_json(indent=1))
    return 0


def cmd_demo(args) -> int:
    from app.routing.router import Router

    router = Router.load(args.artifact)
    print(f"artifact: {router.artifact.build.get('chosen', router.artifact.scorer.family)}, threshold {router.threshold:.4f}")
    for prompt in DEMO_PROMPTS:
        d = router.route(prompt)
        first = prompt.splitlines()[0]
        print(f"tier {d.tier}  score {d.complexity_score:.3f}  conf {d.confidence:.2f}  {d.router_latency_ms:6.1f} ms  {first[:70]}")
    return 0


def cmd_show(args) -> int:
    from app.routing.artifact import load_artifact
    from app.routing.card import card, format_card

    c = card(load_artifact(args.artifact))
    print(json.dumps(c, indent=1) if args.json else format_card(c))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from app.routing.artifact import ArtifactError
    from app.routing.batch import BatchError
    from app.routing.data import DataError

    from app.loadtest import cli as loadtest_cli
    from app.plan import cli as plan_cli

    handler = {
        "calibrate": cmd_calibrate, "evaluate": cmd_evaluate, "score": cmd_score, "label": cmd_label, "route": cmd_route,
        "demo": cmd_demo, "show": cmd_show, "loadtest": loadtest_cli.run, "plan": plan_cli.run,
    }  # fmt: skip
    try:
        return handler[args.command](args)
    except (ArtifactError, BatchError, DataError, ValueError, OSError) as e:
        print(f"tierroute {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
