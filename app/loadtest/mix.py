"""The request mix: chat messages from a JSONL file, in a seeded random order.

Each line holds ``prompt`` (a string: sent as one user message) or ``messages`` (OpenAI chat messages,
sent as they are), read and validated by :func:`app.traffic.read_requests`; other fields are ignored.
The same file, seed and limit give the same requests in the same order, so two runs (or the two arms of
``--compare``) send the same mix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from app.traffic import messages_of, read_requests


def load_mix(path: str | Path, seed: int = 0, limit: int | None = None, skip_invalid: bool = False) -> list[list[dict[str, Any]]]:
    """The ``messages`` of each request, shuffled by ``seed``, the first ``limit`` of them."""
    rows, _, _ = read_requests(path, skip_invalid=skip_invalid)
    if not rows:
        raise ValueError(f"--input {path}: no requests in the file")
    order = np.random.default_rng(seed).permutation(len(rows))
    if limit is not None:
        order = order[:limit]
    return [messages_of(rows[i]) for i in order]


def chat_body(messages: list[dict[str, Any]], model: str, max_tokens: int, stream: bool) -> dict[str, Any]:
    """A ``/v1/chat/completions`` body; a stream asks for token counts in its last chunk."""
    body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def route_body(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """A ``/v1/route`` body: the decision alone."""
    return {"messages": messages}
