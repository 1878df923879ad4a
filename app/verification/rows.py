"""Rows of ``tierroute verify`` (and of answer data): a request, tier 1's answer, optional log-probabilities.

A row is a JSON object with ``prompt`` (or OpenAI ``messages``), ``answer`` (tier 1's answer text;
``weak_answer`` is read too) and optionally ``answer_logprobs`` (the answer's per-token
log-probabilities, a list of numbers) and ``answer_tokens`` (the tokens' texts, same length: they
locate the final answer's span). :func:`answer_of` reads one, naming the line on a bad one.
"""

from __future__ import annotations

import json
from typing import Any

from app.routing.text import Messages, prompt_text
from app.verification.verifier import Answer


class RowError(ValueError):
    """A row that cannot be verified; the message names where and why (never its content)."""


def _floats(value: Any, where: str, field: str) -> list[float] | None:
    if value in (None, ""):
        return None
    if isinstance(value, str):  # a CSV cell
        try:
            value = json.loads(value)
        except ValueError:
            raise RowError(f"{where}: {field} must be a JSON list of numbers") from None
    if not isinstance(value, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        raise RowError(f"{where}: {field} must be a list of numbers")
    return [float(x) for x in value]


def answer_of(row: dict[str, Any], where: str) -> Answer:
    """The request (the router's text of it), answer and log-probabilities of one row."""
    if not isinstance(row, dict):
        raise RowError(f"{where}: expected a JSON object")
    if row.get("messages") is not None:
        try:
            request = prompt_text(Messages.validate_python(row["messages"]))
        except ValueError:
            raise RowError(f"{where}: invalid 'messages' (a list of {{role, content}} with a user message)") from None
    else:
        raw = row.get("prompt")
        if not isinstance(raw, str) or not raw.strip():
            raise RowError(f"{where}: needs a non-empty 'prompt' (or 'messages')")
        request = prompt_text(raw)
    answer = row.get("answer", row.get("weak_answer"))
    if not isinstance(answer, str):
        raise RowError(f"{where}: needs 'answer' (tier 1's answer text)")
    logprobs = _floats(row.get("answer_logprobs"), where, "answer_logprobs")
    tokens = row.get("answer_tokens")
    if isinstance(tokens, str) and tokens:
        try:
            tokens = json.loads(tokens)
        except ValueError:
            raise RowError(f"{where}: answer_tokens must be a JSON list of strings") from None
    if tokens in ("", None):
        tokens = None
    elif not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise RowError(f"{where}: answer_tokens must be a list of strings")
    elif logprobs is not None and len(tokens) != len(logprobs):
        raise RowError(f"{where}: answer_tokens and answer_logprobs differ in length")
    return Answer(request, answer, logprobs, tokens)
