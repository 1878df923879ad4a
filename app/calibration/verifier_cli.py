"""The verifier's part of ``tierroute calibrate``: ``--verifier-output`` fits one from rows with answers.

Rows with tier 1's answer come from ``--data``: a shared-layout directory gives its Llama-3.1 8B/70B
answer rows (MMLU-Pro, ZeroEval GSM8K/MATH-L5/CRUX), a ``.jsonl``/``.csv`` file its rows with ``answer``
(or ``weak_answer``) and ``weak``/``strong`` -- ``tierroute label``'s output is such a file, with
log-probabilities. The nested figures per source are printed and stored in the verifier's report;
``--verifier-only`` skips the router. ``--verifier-check-llm MODEL --endpoint URL`` also fits the router
LLM's yes/no check of the answers on the nested out-of-fold scores (:mod:`app.calibration.verifier_check`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from app.calibration.data import DataError


def add_arguments(c: argparse.ArgumentParser) -> None:
    v = c.add_argument_group("verifier (cascade routing; docs/cascade.md)")
    v.add_argument("--verifier-output", help="also fit a verifier from --data rows that carry tier 1's answer, and write it here")
    v.add_argument("--verifier-only", action="store_true", help="fit only the verifier (no router artifact; --output not needed)")
    v.add_argument("--escalation-share", type=float, default=0.25, help="the verifier's threshold escalates this share of the rows (default 0.25)")
    v.add_argument("--pair", nargs=2, metavar=("TIER1", "TIER2"), help="the models the answers and outcomes are of (default: Llama-3.1 8B/70B)")
    v.add_argument(
        "--verifier-embedding", action="store_true",
        help="also try embeddings as inputs: the request's, for P(tier 2 right), and the answer's end (nested selection decides)",
    )  # fmt: skip
    v.add_argument(
        "--verifier-check-llm", metavar="MODEL_ID",
        help="the router LLM at --endpoint: ask it whether tier 1's answers are correct and complete, and fit when the verifier "
        "consults it (band, weight, centre on the nested scores; weight 0 when it adds nothing). Cache: --rating-cache, "
        "default <verifier-output>.checks.jsonl",
    )  # fmt: skip
    v.add_argument("--verifier-check-limit", type=int, default=300, help="check at most this many answers of each source (default 300)")
    v.add_argument("--verifier-check-sources", nargs="+", metavar="SOURCE", help="check answers of these sources only (default: all)")


def load_answer_rows(paths: list[str]):
    from app.calibration.answers import load_answer_file, load_shared_answers

    rows, sums = [], {}
    for p in paths:
        r, s = load_shared_answers(p) if Path(p).is_dir() else load_answer_file(p)
        rows += r
        sums.update(s)
    return rows, sums


def calibrate_verifier(args) -> int:
    from app.calibration.answers import LLAMA31_PAIR
    from app.calibration.prepared import cached_embedder
    from app.calibration.verifier_build import build_verifier, designs, nested_report
    from app.calibration.verifier_fit import candidates
    from app.calibration.verifier_report import format_verifier_report

    if not 0 < args.escalation_share < 1:
        raise ValueError(f"--escalation-share must be in (0, 1), got {args.escalation_share}")
    if args.verifier_check_llm and not args.endpoint:
        raise ValueError("--verifier-check-llm needs --endpoint (the OpenAI-compatible server of that model)")
    if args.verifier_check_limit < 10:
        raise ValueError(f"--verifier-check-limit must be at least 10, got {args.verifier_check_limit}")
    rows, sums = load_answer_rows(args.data)
    if len({r.source for r in rows}) < 1 or len(rows) < 20:
        raise DataError(f"{len(rows)} answer rows: a verifier needs at least 20")
    progress = not getattr(args, "no_progress", False)
    embed, info = cached_embedder(args.embedding_model, args.prefix, progress) if args.verifier_embedding else (None, None)
    cands = candidates(all(r.answer.logprobs for r in rows), args.verifier_embedding)
    ds = designs(rows, embed, progress)
    report, oofs = nested_report(ds, rows, cands, args.folds, args.folds - 1, args.repeats, args.seed, progress)
    print(format_verifier_report(report))
    art = build_verifier(
        rows, tuple(args.pair or LLAMA31_PAIR), embed, info, args.escalation_share, args.folds - 1, args.seed, report, progress,
        args.verifier_embedding, args.command_line, sums, ds,
    )  # fmt: skip
    if args.verifier_check_llm:
        art.check = _fit_check(args, art, rows, ds, oofs)
    art.save(args.verifier_output)
    print(f"verifier for {art.pair.tier1} -> {art.pair.tier2}: kinds {', '.join(art.experts)}; threshold {art.threshold:.4f} -> {args.verifier_output}")
    return 0


def _fit_check(args, art, rows, ds, oofs):
    """The router LLM's check, fitted on the nested out-of-fold scores of every row (``--verifier-check-llm``)."""
    import numpy as np

    from app.calibration.verifier_check import format_check, rate_and_fit_check
    from app.feedback.endpoint import api_key_from_env

    oof = np.zeros(len(rows))
    for source, (idx, _) in ds.items():
        oof[idx] = oofs[source]
    check = rate_and_fit_check(
        art, rows, oof, args.verifier_check_llm, args.endpoint, cache_path=args.rating_cache or f"{args.verifier_output}.checks.jsonl",
        api_key=api_key_from_env(args.api_key_env), sources=args.verifier_check_sources, per_source=args.verifier_check_limit,
        concurrency=args.concurrency, escalation_share=args.escalation_share, n_splits=args.folds, seed=args.seed,
    )  # fmt: skip
    print(format_check(check))
    return check
