"""Batch scoring of a traffic log: preview how logged requests would be routed (``tierroute score``).

Input: a traffic file (:mod:`app.traffic`: JSONL, one object per line with ``prompt`` or
``messages`` and any other fields). Output: the same objects, in input order, with ``score``
(float in [0, 1]) and ``tier`` (1 or 2) added.

Every line is validated before anything is embedded; the output is written to a
temporary file and renamed into place, so it appears whole or not at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from app.files import write_atomic
from app.routing.router import Router
from app.traffic import read_requests


@dataclass
class BatchResult:
    written: int
    skipped: list[str]  # "line N: reason" for each skipped line
    tier2: int


def score_file(
    router: Router, input_path: str | Path, output_path: str | Path, skip_invalid: bool = False, progress: bool = True
) -> BatchResult:
    rows, texts, skipped = read_requests(input_path, skip_invalid)
    sig = router.score_texts(texts, progress=progress)
    tiers = (sig.score >= router.threshold).astype(int) + 1
    out = [{**row, "score": float(s), "tier": int(t)} for row, s, t in zip(rows, sig.score, tiers)]
    write_atomic(output_path, (json.dumps(r, ensure_ascii=False) + "\n" for r in out))
    return BatchResult(written=len(out), skipped=skipped, tier2=int((tiers == 2).sum()))
