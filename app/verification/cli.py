"""``tierroute verify``: the verifier's verdicts on rows of (request, tier 1's answer), offline.

``tierroute verify --input rows.jsonl --output scores.jsonl`` reads rows ``{"id", "prompt" (or
"messages"), "answer"}`` (optionally ``answer_logprobs``/``answer_tokens``: :mod:`app.verification.rows`)
and writes one ``{"id", "score", "escalate"}`` per row, in input order: ``score`` is the probability that
tier 2 would do better (higher = tier 1's answer more likely not good enough), ``escalate`` whether it
is at or above the threshold. The code path is serving's (:class:`app.verification.verifier.Verifier`),
the execution check included (``--no-execute``: without it, as ``routing.cascade.execute_code: false``).
Every row is checked before anything is scored; a bad row fails the run naming its line, and the
output appears whole or not at all.
"""

from __future__ import annotations

import argparse
import json

COMMANDS = ("verify",)
CHUNK = 512  # rows scored per embedding call (progress and memory)


def add_parser(sub, command: str) -> argparse.ArgumentParser:
    p = sub.add_parser("verify", help="score tier 1's answers: should each request be escalated to tier 2?")
    p.add_argument("--input", required=True, help="JSONL rows {id, prompt|messages, answer[, answer_logprobs, answer_tokens]}")
    p.add_argument("--output", required=True, help="JSONL rows {id, score, escalate}, one per input row")
    p.add_argument("--verifier", help="verifier artifact (default: the one shipped with tierroute)")
    p.add_argument("--threshold", type=float, help="escalate at or above this score (default: the verifier's)")
    p.add_argument(
        "--no-execute", action="store_true",
        help="no execution check: never run the code a request asks about (docs/verifier.md#the-execution-check)",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def read_rows(path: str) -> list[tuple[object, object]]:
    """(id, Answer) of every row; the first bad row raises RowError naming its line."""
    from app.files import iter_jsonl
    from app.verification.rows import RowError, answer_of

    out = []
    for i, row, err in iter_jsonl(path):
        where = f"{path}:{i}"
        if err:
            raise RowError(f"{where}: {err}")
        if not isinstance(row, dict) or "id" not in row:
            raise RowError(f"{where}: needs an 'id'")
        out.append((row["id"], answer_of(row, where)))
    if not out:
        raise RowError(f"{path}: no rows")
    return out


def run(args) -> int:
    from tqdm.auto import tqdm

    from app.files import write_atomic
    from app.verification.artifact import load_verifier
    from app.verification.verifier import Verifier

    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise ValueError(f"--threshold must be in [0, 1], got {args.threshold}")
    verifier = Verifier(load_verifier(args.verifier), args.threshold, execute=not args.no_execute)
    rows = read_rows(args.input)
    embed = None
    if verifier.artifact.embedder is not None:
        from app.routing.embed import Embedder, EmbedderConfig

        info = verifier.artifact.embedder
        model = Embedder(EmbedderConfig(model=info.model_id, prefix=info.prefix))
        verifier.check_embedder(model.model_id, model.dim)
        embed = model.encode
    lines, n = [], 0
    with tqdm(total=len(rows), desc="verify", unit="row", disable=args.no_progress) as bar:
        for start in range(0, len(rows), CHUNK):
            part = rows[start : start + CHUNK]
            for (rid, _), v in zip(part, verifier.verify([a for _, a in part], embed)):
                lines.append(json.dumps({"id": rid, "score": round(v.score, 6), "escalate": v.escalate}) + "\n")
                n += v.escalate
            bar.update(len(part))
    write_atomic(args.output, lines)
    print(f"verified {len(lines)} rows: {n} escalated ({n / len(lines):.1%}) at threshold {verifier.threshold:.4f} -> {args.output}")
    return 0
