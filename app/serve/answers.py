"""Tier 1's answer as the cascade sees it, without Ray: read from engine responses and stream chunks.

* :func:`tier1_request` -- the client's request as tier 1 is asked it in a cascade: log-probabilities
  on, the answer capped at ``cascade.max_tier1_tokens``;
* :func:`answer_of` (a unary response) and :class:`ChunkReader` (SSE chunks) -- the answer's text,
  per-token log-probabilities and tokens, and why it ended;
* :func:`strip_logprobs`, :func:`strip_chunk` -- log-probabilities removed where the client did not ask;
* :func:`reemit` -- a unary answer re-emitted as SSE chunks in OpenAI's chunk shape (buffered streaming);
  :class:`Replay`, :class:`Mapped` -- streams in the shape :func:`app.serve.responses.tag_sse` relays.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DATA = "data: "


def wants_logprobs(req, endpoint: str) -> bool:
    """The client asked for log-probabilities (chat: ``logprobs: true``; completions: ``logprobs: n``)."""
    return bool(req.logprobs) if endpoint == "chat" else req.logprobs is not None


def client_limit(req, endpoint: str) -> int | None:
    """The client's cap on completion tokens (None: the engine's default, up to the context)."""
    if endpoint == "chat":
        return req.max_completion_tokens or req.max_tokens
    return req.max_tokens


def tier1_request(req, endpoint: str, cap: int, stream: bool):
    """(tier 1's request, whether ``cap`` is below the client's own limit).

    A copy of the client's ``req`` with log-probabilities of the sampled tokens on (chat
    ``logprobs=True``; completions ``logprobs=0``, or the client's own) and at most ``cap`` completion
    tokens; ``stream`` as given (buffered streaming asks tier 1 unary)."""
    limit = client_limit(req, endpoint)
    ours = limit is None or cap < limit
    n = cap if ours else limit
    upd: dict[str, Any] = {"stream": stream}
    if not stream:
        upd["stream_options"] = None
    if endpoint == "chat":
        upd.update(logprobs=True, max_completion_tokens=n, max_tokens=None)
    else:
        upd.update(logprobs=0 if req.logprobs is None else req.logprobs, max_tokens=n)
    return req.model_copy(update=upd), ours


@dataclass
class Tier1Answer:
    """Tier 1's (first choice's) answer: text, per-token log-probabilities and tokens, why it ended."""

    text: str = ""
    logprobs: list[float] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict | None = None
    deltas: int = 0  # non-empty content chunks of a stream (the count of tokens when there are no log-probabilities)

    def add_logprobs(self, lp: dict | None, endpoint: str) -> None:
        if not lp:
            return
        if endpoint == "chat":
            for t in lp.get("content") or []:
                self.logprobs.append(float(t["logprob"]))
                self.tokens.append(t.get("token") or "")
        else:
            for t, x in zip(lp.get("tokens") or [], lp.get("token_logprobs") or []):
                if x is not None:
                    self.logprobs.append(float(x))
                    self.tokens.append(t)

    @property
    def n_tokens(self) -> int:
        """Completion tokens so far: one log-probability per sampled token; a tier that returns none (a remote
        endpoint may not) is counted one token per content chunk, as engines stream them."""
        return len(self.logprobs) or self.deltas


def answer_of(body: dict, endpoint: str) -> Tier1Answer:
    """The first choice's answer in a unary response body (``model_dump(mode="json")``)."""
    choice = (body.get("choices") or [{}])[0]
    text = (choice.get("message") or {}).get("content") if endpoint == "chat" else choice.get("text")
    a = Tier1Answer(text or "", finish_reason=choice.get("finish_reason"), usage=body.get("usage"))
    a.add_logprobs(choice.get("logprobs"), endpoint)
    return a


def strip_logprobs(body: dict) -> dict:
    """``body`` without its choices' log-probabilities (in place)."""
    for c in body.get("choices") or []:
        if "logprobs" in c:
            c["logprobs"] = None
    return body


def _obj(chunk: str) -> dict | None:
    if not isinstance(chunk, str) or not chunk.startswith(DATA + "{"):
        return None
    try:
        return json.loads(chunk[len(DATA):])
    except ValueError:
        return None


def strip_chunk(chunk: str, logprobs: bool = True, usage: bool = False) -> str:
    """An SSE chunk without its log-probabilities (``logprobs``) and its usage (``usage``: a usage-only
    chunk becomes nothing); other chunks, and error objects, unchanged."""
    obj = _obj(chunk)
    if obj is None:
        return chunk
    changed = False
    if logprobs and any(c.get("logprobs") for c in obj.get("choices") or []):
        strip_logprobs(obj)
        changed = True
    if usage and obj.get("usage") is not None:
        if not obj.get("choices"):
            return ""
        obj["usage"], changed = None, True
    return f"{DATA}{json.dumps(obj)}\n\n" if changed else chunk


class ChunkReader:
    """Tier 1's answer accumulated from its SSE chunks (the first choice's)."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.answer = Tier1Answer()

    def add(self, chunk: str) -> None:
        obj = _obj(chunk)
        if obj is None:
            return
        if obj.get("usage"):
            self.answer.usage = obj["usage"]
        for c in obj.get("choices") or []:
            if c.get("index", 0) != 0:
                continue
            text = (c.get("delta") or {}).get("content") if self.endpoint == "chat" else c.get("text")
            self.answer.text += text or ""
            self.answer.deltas += bool(text)
            self.answer.add_logprobs(c.get("logprobs"), self.endpoint)
            if c.get("finish_reason"):
                self.answer.finish_reason = c["finish_reason"]


def _sse(obj: dict) -> str:
    return f"{DATA}{json.dumps(obj)}\n\n"


def reemit(body: dict, endpoint: str, include_usage: bool) -> list[str]:
    """A unary response as the SSE chunks its stream would have been: per choice, its text (with its
    log-probabilities, if ``body`` still has them), then its end; the usage chunk if the client asked.
    No ``[DONE]`` (:func:`app.serve.responses.tag_sse` ends every stream with one)."""
    head = {"id": body.get("id"), "created": body.get("created"), "model": body.get("model")}
    out = []
    for c in body.get("choices") or []:
        i, lp = c.get("index", 0), c.get("logprobs")
        if endpoint == "chat":
            msg = c.get("message") or {}
            delta = {"role": "assistant", "content": msg.get("content") or ""}
            if msg.get("tool_calls"):
                delta["tool_calls"] = [{"index": k, **t} for k, t in enumerate(msg["tool_calls"])]
            first = {"index": i, "delta": delta, "logprobs": lp, "finish_reason": None}
            last = {"index": i, "delta": {}, "logprobs": None, "finish_reason": c.get("finish_reason")}
            kind = "chat.completion.chunk"
        else:
            first = {"index": i, "text": c.get("text") or "", "logprobs": lp, "finish_reason": None}
            last = {"index": i, "text": "", "logprobs": None, "finish_reason": c.get("finish_reason")}
            kind = "text_completion"
        out += [_sse({**head, "object": kind, "choices": [first]}), _sse({**head, "object": kind, "choices": [last]})]
    if include_usage and body.get("usage"):
        kind = "chat.completion.chunk" if endpoint == "chat" else "text_completion"
        out.append(_sse({**head, "object": kind, "choices": [], "usage": body["usage"]}))
    return out


class Replay:
    """An engine stream that has already ended (its chunks were all passed as the first batch)."""

    async def __anext__(self):
        raise StopAsyncIteration

    def cancel(self) -> None:
        pass


class Mapped:
    """An engine stream (batches of chunks) with ``fn`` applied to each string chunk; cancel passes through."""

    def __init__(self, gen, fn: Callable[[str], str]):
        self.gen, self.fn = gen, fn

    async def __anext__(self):
        batch = await self.gen.__anext__()
        batch = batch if isinstance(batch, list) else [batch]
        return [self.fn(c) if isinstance(c, str) else c for c in batch]

    def cancel(self) -> None:
        self.gen.cancel()
