"""``tierroute calibrate``, ``evaluate``, ``score`` and ``show``: build an artifact, measure it, preview it on
a traffic log, and read its card.

The top-level CLI (:mod:`app.cli`) calls ``add_parser(sub, command)`` for each of :data:`COMMANDS` and
``run(args)``. Heavy imports (the embedder, scikit-learn) wait for the command, so ``--help`` stays quick.
User errors are ValueError naming the flag.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.calibration.ladder_cli import add_arguments as add_ladder_arguments, run_ladder_calibrate, run_ladder_eval
from app.calibration.verifier_cli import add_arguments as add_verifier_arguments, calibrate_verifier
from app.routing.cli import add_artifact_arg

COMMANDS = ("calibrate", "evaluate", "score", "show")

CALIBRATE = (
    "Embed labelled prompts; per kind of traffic (each source with outcomes, and 'chat' for label-only "
    "sources) choose an expert (prompt length, logistic regression, topic rates+length, kNN+length) by cross-validation, preferring the "
    "simpler one, calibrate it to P(needs the large model), fit a gate between kinds, report nested cross-validated "
    "figures per source beside prompt length and random, and set the threshold on a stated traffic mix or on your "
    "own traffic (--traffic). Data: a directory laid out like ../shared/data, or JSONL/CSV files with 'prompt' "
    "(or 'messages') and weak/strong outcome columns or a simple/complex 'label'."
)
EVALUATE = (
    "Route labelled prompts with an artifact; report APGR, CPT(50%%), CPT(80%%) per source beside the "
    "random and prompt-length baselines, the tier split, quality and cost at the artifact's threshold, "
    "and write one PNG of quality vs. tier-2 calls per source. Or, with --outcomes, the router's quality in "
    "production from shadow-evaluation logs: the share of tier-1 answers judged as good as tier 2's, and of "
    "tier-2 requests tier 1 would have served."
)
SCORE = (
    "Each input line is {\"prompt\": ...} or {\"messages\": [...]} with any other fields; each output "
    "line is that object with 'score' (0-1) and 'tier' (1|2), in input order. A malformed line is an error "
    "naming its line number and nothing is written, unless --skip-invalid."
)
SHOW = (
    "Print an artifact's card: its kinds of traffic and their experts, the threshold and the traffic it was "
    "set on (each source's tier-2 share there), whether the router LLM was fitted, and per source the nested "
    "cross-validated figure beside prompt length and random, with a verdict from the interval of the lift over length."
)


def add_parser(sub, command: str) -> argparse.ArgumentParser:
    return {"calibrate": _calibrate_parser, "evaluate": _evaluate_parser, "score": _score_parser, "show": _show_parser}[command](sub)


def run(args) -> int:
    return {"calibrate": run_calibrate, "evaluate": run_evaluate, "score": run_score, "show": run_show}[args.command](args)


def _calibrate_parser(sub) -> argparse.ArgumentParser:
    c = sub.add_parser("calibrate", help="build a calibration artifact from labelled prompts", description=CALIBRATE)
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
    c.add_argument("--output", help="where to write the artifact (JSON); required unless --verifier-only")
    c.add_argument("--embedding-model", default=None, help="sentence-transformers model id or path (default all-MiniLM-L6-v2)")
    c.add_argument("--prefix", default="", help="task prefix for the embedding model, e.g. 'classification: '")
    c.add_argument("--family", choices=["length", "logistic", "topic", "knn"], help="force one expert family for every kind")
    c.add_argument(
        "--mixing", choices=["top-kind", "mixture"], default="top-kind",
        help="one score from the kinds' experts: the most likely kind's (default; keeps each kind's order) or the gate-weighted mixture",
    )  # fmt: skip
    c.add_argument(
        "--label-prior", type=float, default=0.15,
        help="label-only kinds (simple/complex exemplars) have no outcome rate: their mean P(needs the large model) (default 0.15)",
    )  # fmt: skip
    c.add_argument("--weak-col", help="column of the weak model's outcome (with --strong-col)")
    c.add_argument("--strong-col", help="column of the strong model's outcome")
    c.add_argument("--folds", type=int, default=5, help="outer folds of the nested cross-validation (inner: one fewer)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument(
        "--repeats", type=int, default=1,
        help="repeat the nested cross-validation on this many outer splits (seeds --seed, --seed+1, ...) and report the mean "
        "and each repeat's figure: on a few hundred rows one split's figure moves by several points",
    )  # fmt: skip
    add_verifier_arguments(c)
    add_ladder_arguments(c, calibrate=True)
    h = c.add_argument_group(
        "router-LLM hybrid",
        "rate prompts with outcomes through --endpoint with the serving prompt and fit the band, the LLM's weight and "
        "centre by cross-validated APGR (weight 0 when the ratings add nothing); without --router-llm the artifact "
        "keeps unfitted defaults and says so",
    )
    h.add_argument("--router-llm", metavar="MODEL_ID", help="the router LLM's model id at --endpoint")
    h.add_argument("--endpoint", help="OpenAI-compatible base URL serving --router-llm / --verifier-check-llm (e.g. vllm serve, or a tierroute tier)")
    h.add_argument("--router-llm-limit", type=int, default=600, help="rate at most this many prompts with outcomes, each source alike (default 600)")
    h.add_argument("--rating-cache", help="JSONL cache of ratings (default: <output>.ratings.jsonl); reruns ask only for what is missing")
    h.add_argument("--api-key-env", help="environment variable holding the endpoint's API key")
    h.add_argument("--concurrency", type=int, default=4, help="concurrent rating requests")
    return c


def _evaluate_parser(sub) -> argparse.ArgumentParser:
    e = sub.add_parser(
        "evaluate", help="APGR / CPT of the router vs. random and prompt-length baselines, with a plot", description=EVALUATE
    )
    what = e.add_mutually_exclusive_group(required=True)
    what.add_argument("--data", nargs="+", help="labelled data with weak/strong outcomes")
    what.add_argument("--outcomes", nargs="+", metavar="LOG", help="shadow outcome logs (JSONL files, or a directory of them)")
    add_artifact_arg(e)
    e.add_argument("--plot-dir", default="eval-plots", help="folder for the PNG plots (default ./eval-plots)")
    e.add_argument("--cost-tier1", type=float, default=1.0, help="relative cost of one tier-1 request")
    e.add_argument("--cost-tier2", type=float, default=10.0, help="relative cost of one tier-2 request")
    e.add_argument("--json", help="also write the full report as JSON here")
    e.add_argument("--cascade", action="store_true", help="quality-vs-cost curves of the cascade (nested verifier) vs routing, on rows with answers")
    e.add_argument("--folds", type=int, default=5, help="--cascade: outer folds of the nested cross-validation")
    e.add_argument("--verifier-embedding", action="store_true", help="--cascade: the verifier may read embeddings, as in calibrate")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--weak-col")
    e.add_argument("--strong-col")
    add_ladder_arguments(e, calibrate=False)
    return e


def _score_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser("score", help="score a JSONL traffic log in batch (adds 'score' and 'tier' to each line)", description=SCORE)
    s.add_argument("--input", required=True)
    s.add_argument("--output", required=True)
    add_artifact_arg(s)
    s.add_argument("--skip-invalid", action="store_true", help="report and skip malformed lines instead of failing")
    s.add_argument("--batch-size", type=int, default=32, help="embedding batch size")
    return s


def _show_parser(sub) -> argparse.ArgumentParser:
    sh = sub.add_parser("show", help="what an artifact is and how far to trust it, per source", description=SHOW)
    add_artifact_arg(sh)
    sh.add_argument("--json", action="store_true", help="print the card as JSON instead")
    sh.add_argument("--verifier", nargs="?", const="default", help="describe a verifier instead (default: the shipped one)")
    return sh


def _pair(args) -> tuple[str, str] | None:
    if bool(args.weak_col) != bool(args.strong_col):
        raise ValueError("--weak-col and --strong-col go together")
    return (args.weak_col, args.strong_col) if args.weak_col else None


def _load_data(paths: list[str], pair=None):
    from app.calibration.data import Dataset, load

    ds = Dataset([])
    for path in paths:
        ds = ds.extend(load(path, pair))
    return ds


def _check_calibrate(args) -> None:
    """The options' rules, checked before anything is read or embedded."""
    from app.calibration.nested import check_repeats

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
    check_repeats(args.repeats)
    if args.folds < 3:
        raise ValueError(f"--folds must be at least 3 (nested: the inner cross-validation uses one fewer), got {args.folds}")


def _check_router_llm(args) -> None:
    if bool(args.router_llm) != bool(args.endpoint) and not (args.endpoint and args.verifier_check_llm):
        raise ValueError("--router-llm and --endpoint go together")
    if args.router_llm_limit < 50:
        raise ValueError(f"--router-llm-limit must be at least 50, got {args.router_llm_limit}")


def run_calibrate(args) -> int:
    import numpy as np

    from app.calibration.build import build_artifact
    from app.calibration.data import load_file, sha256_file
    from app.calibration.fit import fit_router
    from app.calibration.nested import nested_cv
    from app.calibration.prepared import embedding_cache, prepare
    from app.calibration.threshold import set_operating_point
    from app.feedback.endpoint import api_key_from_env
    from app.routing.embed import DEFAULT_MODEL, Embedder, EmbedderConfig
    from app.routing.router import Router
    from app.traffic import read_requests

    if args.ladder:
        return run_ladder_calibrate(args)
    if args.verifier_only or not args.output:
        if not (args.verifier_only and args.verifier_output):
            raise ValueError("--output is required (or --verifier-only with --verifier-output)")
        return calibrate_verifier(args)
    _check_calibrate(args)
    traffic = read_requests(args.traffic)[1] if args.traffic else None  # fail on a bad file before the long part
    _check_router_llm(args)
    key = api_key_from_env(args.api_key_env)
    ds = _load_data(args.data, _pair(args))
    for path in args.exemplars:
        ds = ds.extend(load_file(path))
    print(f"calibration data: {len(ds)} prompts from {', '.join(ds.sources())}", file=sys.stderr)
    embedder = Embedder(EmbedderConfig(model=args.embedding_model or DEFAULT_MODEL, prefix=args.prefix))
    prepared = prepare(ds, embedder, cache=embedding_cache())
    fit = fit_router(prepared, np.arange(len(ds)), args.folds, args.seed, args.family, args.label_prior, args.mixing)
    evaluation = nested_cv(
        prepared, args.folds, args.folds - 1, args.seed, args.family, args.label_prior, plain=fit.choices, repeats=args.repeats,
        mixing=args.mixing,
    )  # fmt: skip
    art = build_artifact(
        prepared, embedder, fit, evaluation, args.tier2_share, args.recover, args.label_prior, args.min_source_share,
        command=args.command_line,
    )  # fmt: skip
    if traffic is not None:
        scores = Router(art, embedder).score_texts(traffic, progress=True).score
        share = 0.15 if args.tier2_share is None else args.tier2_share
        art = set_operating_point(art, scores, share, f"{args.traffic} (sha256 {sha256_file(Path(args.traffic))[:16]})")
    if args.router_llm:
        art = _fit_router_llm(args, art, prepared, evaluation.oof, key)
    art.save(args.output)
    _print_calibration(args, art, fit, evaluation, traffic is not None)
    return calibrate_verifier(args) if args.verifier_output else 0


def _fit_router_llm(args, art, prepared, oof, key):
    """The artifact with the router LLM's use fitted on ratings of its outcome rows (``calibrate --router-llm``)."""
    from app.calibration.router_llm import format_fit, rate_and_fit

    hybrid = rate_and_fit(
        art, prepared, oof, args.router_llm, args.endpoint, cache_path=args.rating_cache or f"{args.output}.ratings.jsonl",
        api_key=key, limit=args.router_llm_limit, concurrency=args.concurrency, n_splits=args.folds, seed=args.seed,
    )  # fmt: skip
    print(format_fit(hybrid))
    return art.model_copy(update={"hybrid": hybrid})


def _print_calibration(args, art, fit, evaluation, on_traffic: bool) -> None:
    from app.calibration.nested import format_nested
    from app.calibration.selection import format_choices

    print(format_choices(fit.choices))
    again = f"; the mean over {args.repeats} outer splits" if args.repeats > 1 else ""
    print(f"\nnested cross-validation (selection and calibration inside the folds{again}) per source:")
    print(format_nested(evaluation.report))
    if evaluation.other_mixing:
        print(f"\nthe same fits scored with mixing {evaluation.other_mixing['mixing']!r} instead:")
        print(format_nested(evaluation.other_mixing["by_source"]))
    shares = art.operating_point.get("tier2_share_by_source", {})
    print(
        f"\nchosen: {art.build['chosen']}; threshold {art.threshold:.4f} -> {100 * art.tier2_share:.1f}% tier 2 on "
        f"{'your traffic' if on_traffic else 'the calibration mix'}"
        + (" (" + ", ".join(f"{s} {100 * v:.1f}%" for s, v in shares.items()) + ")" if shares else "")
        + f"; wrote {args.output}"
    )


def run_evaluate(args) -> int:
    from app.calibration.evaluate import evaluate, format_report
    from app.routing.router import Router

    if args.outcomes:
        return _evaluate_outcomes(args)
    if args.ladder:
        return run_ladder_eval(args)
    if args.cascade:
        from app.calibration.cascade_eval import run_cascade

        return run_cascade(args)

    ds = _load_data(args.data, _pair(args))
    report = evaluate(Router.load(args.artifact), ds, args.cost_tier1, args.cost_tier2, plot_dir=args.plot_dir)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


def _evaluate_outcomes(args) -> int:
    from app.feedback.outcomes import format_outcomes, read_outcomes, summarize_outcomes

    rows, skipped = read_outcomes(args.outcomes)
    if not rows:
        raise ValueError(f"--outcomes: no shadow outcome rows ({skipped} lines that are not)")
    report = summarize_outcomes(rows)
    report["skipped_lines"] = skipped
    print(format_outcomes(report) + (f"\n({skipped} lines skipped: not shadow outcomes)" if skipped else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


def run_score(args) -> int:
    from app.calibration.batch import score_file
    from app.routing.artifact import load_artifact
    from app.routing.embed import EmbedderConfig
    from app.routing.router import Router

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


def run_show(args) -> int:
    from app.calibration.card import card, format_card
    from app.routing.artifact import load_artifact

    if args.verifier:
        from app.calibration.verifier_report import describe_verifier
        from app.verification.artifact import load_verifier

        v = load_verifier(None if args.verifier == "default" else args.verifier)
        print(v.model_dump_json(indent=1, exclude={"gate", "experts"}) if args.json else describe_verifier(v))
        return 0
    c = card(load_artifact(args.artifact))
    print(json.dumps(c, indent=1) if args.json else format_card(c))
    return 0
