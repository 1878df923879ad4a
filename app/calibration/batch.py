"""Batch scoring of a traffic log: preview how logged requests would be routed.

Input: JSONL, one object per line with ``prompt`` (a string) or ``messages``
(OpenAI chat messages) and any other fields. Output: the same objects, in input
order, with ``score`` (float in [0, 1]) and ``tier`` (1 or 2) added.

Every line is validated before anything is embedded; the output is written to a
temporary file and renamed into place, so it appears whole or not at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.routing.data import iter_jsonl, write_atomic
from app.routing.errors import first_error
from app.routing.router import Router
from app.routing.text import Messages, prompt_text


class BatchError(ValueError):
    """Invalid input lines; nothing was written."""


@dataclass
class BatchResult:
    written: int
    skipped: list[str]  # "line N: reason" for each skipped line
    tier2: int


def _line_error(row: Any) -> tuple[str | None, str | None]:
    """(text to score, None) or (None, reason)."""
    if not isinstance(row, dict):
        return None, "expected a JSON object"
    if "messages" in row:
        try:
            return prompt_text(Messages.validate_python(row["messages"])), None
        except ValidationError as e:
            loc, msg = first_error(e)
            return None, f"invalid 'messages' at {loc or 'top level'}: {msg}"
        except ValueError as e:
            return None, str(e)
    prompt = row.get("prompt")
    if prompt is None:
        return None, "needs a 'prompt' (string) or 'messages' (list) field"
    if not isinstance(prompt, str):
        return None, f"'prompt' must be a string, not {type(prompt).__name__}"
    if not prompt.strip():
        return None, "'prompt' is empty"
    return prompt_text(prompt), None


def read_requests(path: str | Path, skip_invalid: bool = False) -> tuple[list[dict], list[str], list[str]]:
    """(rows, texts, skipped) for valid lines; raises BatchError unless ``skip_invalid``."""
    rows, texts, problems = [], [], []
    for n, row, err in iter_jsonl(path):
        text = None
        if err is None:
            text, err = _line_error(row)
        if err:
            problems.append(f"line {n}: {err}")
            continue
        rows.append(row)
        texts.append(text)
    if problems and not skip_invalid:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BatchError(f"{path}: {problems[0]}{more}; nothing was written (use --skip-invalid to skip such lines)")
    return rows, texts, problems


def score_file(
    router: Router, input_path: str | Path, output_path: str | Path, skip_invalid: bool = False, progress: bool = True
) -> BatchResult:
    rows, texts, skipped = read_requests(input_path, skip_invalid)
    sig = router.score_texts(texts, progress=progress)
    tiers = (sig.score >= router.threshold).astype(int) + 1
    out = [{**row, "score": float(s), "tier": int(t)} for row, s, t in zip(rows, sig.score, tiers)]
    write_atomic(output_path, (json.dumps(r, ensure_ascii=False) + "\n" for r in out))
    return BatchResult(written=len(out), skipped=skipped, tier2=int((tiers == 2).sum()))
