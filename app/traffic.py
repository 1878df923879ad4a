"""Traffic files: JSONL of requests, one per line, as ``score``, ``label``, ``loadtest``, ``plan`` and
``calibrate --traffic`` read them.

Each line holds ``prompt`` (a string) or ``messages`` (OpenAI chat messages) and any other fields.
Every line is validated before anything is done with the file. Imports only :mod:`app.files`,
:mod:`app.validation` and :mod:`app.routing.text` (the text the router scores).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.files import iter_jsonl
from app.routing.text import Messages, prompt_text
from app.validation import first_error


class TrafficError(ValueError):
    """Invalid lines in a traffic file; nothing was written."""


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
    """(rows, texts, skipped) for valid lines; raises TrafficError unless ``skip_invalid``."""
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
        raise TrafficError(f"{path}: {problems[0]}{more}; nothing was written (use --skip-invalid to skip such lines)")
    return rows, texts, problems


def messages_of(row: dict[str, Any]) -> list[dict[str, Any]]:
    """A valid row's chat messages: its ``messages``, or its ``prompt`` as one user message."""
    if "messages" in row:
        return row["messages"]
    return [{"role": "user", "content": row["prompt"]}]
