"""``tierroute label``: outcome rows for your own traffic from your own two tiers and a judge.

The top-level CLI (:mod:`app.cli`) calls ``add_parser(sub, command)`` for each of :data:`COMMANDS` and
``run(args)``. Heavy imports wait for the command, so ``--help`` stays quick.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

COMMANDS = ("label",)


def add_parser(sub, command: str = "label") -> argparse.ArgumentParser:
    p = sub.add_parser(
        command,
        help="label a traffic sample with your own tiers' answers and a judge (rows calibrate reads)",
        description="For each prompt of a JSONL traffic sample ({\"prompt\": ...} or {\"messages\": [...]}): the tier-1 and "
        "tier-2 answers from an OpenAI-compatible endpoint and a judge's pairwise verdict in both orders. Rows are "
        "appended as they finish; a rerun skips what is done. Prints a token estimate first.",
    )
    p.add_argument("--input", required=True, help="traffic sample (JSONL)")
    p.add_argument("--output", required=True, help="outcome rows (JSONL, appended; resumable)")
    p.add_argument("--endpoint", default="http://127.0.0.1:8000", help="OpenAI-compatible base URL (a tierroute graph: tiers by model id)")
    p.add_argument("--tier1", required=True, help="model id of tier 1")
    p.add_argument("--tier2", required=True, help="model id of tier 2")
    p.add_argument("--judge", help="model id of the judge (default: --tier2)")
    p.add_argument("--api-key-env", help="environment variable holding the API key to send")
    p.add_argument("--limit", type=int, help="label at most the first N prompts")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=256, help="per answer")
    p.add_argument("--tier1-price", type=float, default=0.10, help="per million tokens, for the estimate")
    p.add_argument("--tier2-price", type=float, default=0.90, help="per million tokens, for the estimate (the judge too)")
    return p


def run(args) -> int:
    import asyncio

    from tqdm import tqdm

    from app.feedback.endpoint import api_key_from_env
    from app.feedback.label import LabelConfig, Labeler, done_ids, estimate_label_tokens, load_traffic, repair, row_id

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
    est = estimate_label_tokens(todo, cfg.max_tokens)
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
