"""One chat completion over httpx, streaming or not, timed from when it was due to be sent.

How a response says where it was served: the tierroute graph's ``x-tierroute-tier`` / ``x-tierroute-model``
headers, else the body's ``tierroute`` field; a plain OpenAI endpoint says neither, so its requests are
grouped by the model that answered (the body's ``model``), else the model asked for.
Time to first token (streaming) is the time to the first chunk that carries content.
A cascade says which path a request took (``x-tierroute-path`` or the body's ``tierroute.path``: e.g. tier 1's
answer kept, escalated, direct to tier 2), the verifier's score and the tier-1 tokens an escalated request
spent, where the endpoint reports them (``x-tierroute-verifier-score`` / ``x-tierroute-tier1-tokens`` or
``tierroute.verifier.score`` / ``tierroute.tier1_tokens``); absent, they stay None.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from app.loadtest import errors
from app.serve.headers import tier_of_header

CHAT = "/v1/chat/completions"


@dataclass
class Outcome:
    index: int  # the request's position in the mix
    due_s: float  # when it was due to be sent, seconds from the start of its level
    e2e_s: float | None = None  # due -> last byte; None when it failed
    ttft_s: float | None = None  # due -> first content chunk (streaming)
    status: int | None = None
    error: str | None = None  # kind (app.loadtest.errors); None: it succeeded
    tier: int | None = None
    model: str | None = None  # the model that answered
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    router_ms: float | None = None  # x-tierroute-router-latency-ms
    path: str | None = None  # cascade: the path taken, as the endpoint names it
    verifier_score: float | None = None
    tier1_tokens: int | None = None  # tokens tier 1 generated for this request (an escalated one: spent, not shown)

    @property
    def escalated(self) -> bool:
        return self.path is not None and "escalat" in self.path.lower()

    @property
    def ok(self) -> bool:
        return self.error is None

    def group(self) -> str | None:
        """``tier1``/``tier2`` where the endpoint said; else the answering model; None for a failure of unknown tier."""
        if self.tier is not None:
            return f"tier{self.tier}"
        return self.model if self.ok else None


def _from_headers(o: Outcome, headers: httpx.Headers) -> None:
    tier = tier_of_header(headers.get("x-tierroute-tier"))
    if tier is not None:
        o.tier = tier[0]
    o.model = headers.get("x-tierroute-model") or o.model
    o.router_ms = _number(headers.get("x-tierroute-router-latency-ms"), float)
    o.path = headers.get("x-tierroute-path") or o.path
    o.verifier_score = _number(headers.get("x-tierroute-verifier-score"), float)
    o.tier1_tokens = _number(headers.get("x-tierroute-tier1-tokens"), int)


def _number(v, kind):
    """``kind(v)`` of a header or body value, None when absent or not a number."""
    if v is None or isinstance(v, bool):
        return None
    try:
        return kind(v)
    except (TypeError, ValueError):
        return None


def _from_body(o: Outcome, obj: dict[str, Any]) -> None:
    """Tier, model and usage from a response body or stream chunk, where the headers did not say."""
    routed = obj.get("tierroute")
    if isinstance(routed, dict):
        if o.tier is None and isinstance(routed.get("tier"), int):
            o.tier = routed["tier"]
        if o.path is None and isinstance(routed.get("path"), str):
            o.path = routed["path"]
        if o.verifier_score is None:
            v = routed.get("verifier")
            o.verifier_score = _number(v.get("score") if isinstance(v, dict) else routed.get("verifier_score"), float)
        if o.tier1_tokens is None:
            o.tier1_tokens = _number(routed.get("tier1_tokens"), int)
    if o.model is None and isinstance(obj.get("model"), str):
        o.model = obj["model"]
    usage = obj.get("usage")
    if isinstance(usage, dict):
        o.prompt_tokens = usage.get("prompt_tokens", o.prompt_tokens)
        o.completion_tokens = usage.get("completion_tokens", o.completion_tokens)


def _has_content(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("reasoning_content") or choice.get("text"):
            return True
    return False


async def _unary(client: httpx.AsyncClient, body: dict, o: Outcome, t0: float, headers: dict | None = None) -> None:
    r = await client.post(CHAT, json=body, headers=headers)
    o.status = r.status_code
    if r.status_code >= 400:
        o.error = errors.http_error(r.status_code, r.content)
        return
    _from_headers(o, r.headers)
    _from_body(o, r.json())
    o.e2e_s = time.perf_counter() - t0


async def _streamed(client: httpx.AsyncClient, body: dict, o: Outcome, t0: float, headers: dict | None = None) -> None:
    async with client.stream("POST", CHAT, json=body, headers=headers) as r:
        o.status = r.status_code
        if r.status_code >= 400:
            o.error = errors.http_error(r.status_code, await r.aread())
            return
        _from_headers(o, r.headers)
        done = False
        async for line in r.aiter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, SSE comments
            payload = line[len("data:"):].strip()
            if payload == "[DONE]":
                done = True
                break
            chunk = json.loads(payload)
            if "error" in chunk:
                o.error = o.error or errors.stream_error(chunk["error"])
                continue
            if o.ttft_s is None and _has_content(chunk):
                o.ttft_s = time.perf_counter() - t0
            _from_body(o, chunk)
    if o.error is None and not done:
        o.error = errors.INCOMPLETE
    if o.error is None:
        o.e2e_s = time.perf_counter() - t0


async def send(
    client: httpx.AsyncClient, body: dict, index: int, due: float, level_start: float, timeout: float, headers: dict | None = None
) -> Outcome:
    """Send ``body`` to ``/v1/chat/completions`` (with ``headers``: an arm's, e.g. the cascade opt-out); latencies
    count from ``due`` (``time.perf_counter()`` clock), so time an open-loop request waited on the client side is
    not hidden. Never raises for a failed request."""
    o = Outcome(index=index, due_s=due - level_start)
    call = _streamed if body.get("stream") else _unary
    try:
        await asyncio.wait_for(call(client, body, o, due, headers), timeout)
    except Exception as e:  # noqa: BLE001 — classified; anything unexpected is re-raised by exception_kind
        o.error = errors.exception_kind(e)
    if o.error is not None:
        o.e2e_s = o.ttft_s = None
    return o
