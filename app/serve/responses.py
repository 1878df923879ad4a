"""How a response says it was routed, without Ray: :class:`Served` and its shaping of answers.

* :class:`Served` -- the router's decision and what the ingress made of it; its ``reason`` (routed,
  bypass, degraded, fallback, over-cap) is derived here and only here (:meth:`Served.as_decided`);
* :func:`bypass` -- the decision of a request that named a tier's model;
* :func:`decision_headers`, :func:`routed_field` -- the ``x-tierroute-*`` headers and the ``tierroute``
  body field; :func:`tag_sse` -- an engine's stream relayed with that field on its first chunk.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from app.routing.router import Decision
from app.serve.calls import within
from app.serve.errors import APIError, internal_error, timed_out
from app.serve.fallback import Fallback

logger = logging.getLogger("tierroute.ingress")

UNSCORED = ("bypass", "degraded")  # decisions made without scoring: their scorer is the reason


def bypass(tier: int, threshold: float) -> Decision:
    """The decision of a request that named a tier's model: no scoring, said in the same shape."""
    return Decision(tier=tier, complexity_score=0.0, confidence=1.0, threshold=threshold, scorer="bypass", signals={})


@dataclass
class Served:
    """How a request was served: the router's decision and what the ingress made of it.

    ``reason``: ``routed`` (by the decision), ``bypass`` (the request named a tier's model),
    ``fallback`` (the decided tier failed; ``fallback`` says how), ``degraded`` (the embedder
    failed: the configured tier), ``over-cap`` (the key's tier-2 cap sent it to tier 1).
    """

    decision: Decision
    tier: int
    model: str
    reason: str
    fallback: Fallback | None = None
    key: str | None = None

    @property
    def scored(self) -> bool:
        """The decision came from scoring the request (also when another tier then served it)."""
        return self.decision.scorer not in UNSCORED

    @classmethod
    def as_decided(cls, d: Decision, model: str, key: str | None = None) -> "Served":
        """Served by the tier ``d`` names: reason ``bypass`` or ``degraded`` where its scorer says so, else ``routed``."""
        served = cls(d, d.tier, model, "routed", key=key)
        if not served.scored:
            served.reason = d.scorer
        return served

    def moved(self, tier: int, model: str, reason: str, fallback: Fallback | None = None) -> None:
        """Served by ``tier`` instead of the decided one, because of ``reason`` (fallback, over-cap)."""
        self.tier, self.model, self.reason = tier, model, reason
        if fallback is not None:
            self.fallback = fallback


def decision_headers(s: Served) -> dict[str, str]:
    h = {
        "x-tierroute-tier": str(s.tier),
        "x-tierroute-model": s.model,
        "x-tierroute-reason": s.reason,
        "x-tierroute-score": f"{s.decision.complexity_score:.4f}",
        "x-tierroute-router-latency-ms": f"{s.decision.router_latency_ms:.2f}",
    }
    if s.fallback is not None:
        h["x-tierroute-fallback"] = s.fallback.header()
    return h


def routed_field(s: Served) -> dict[str, Any]:
    """The ``tierroute`` field added to a response body (or to the first chunk of a stream)."""
    d = s.decision
    return {
        "tier": s.tier,
        "model": s.model,
        "reason": s.reason,
        "fallback": s.fallback.field() if s.fallback else None,
        "decided_tier": d.tier,
        **d.model_dump(exclude={"tier"}),
    }


async def tag_sse(
    first: list,
    rest,
    routed: dict,
    rid: str,
    deadline_s: float | None = None,
    on_end: Callable[[dict | None, str | None], None] | None = None,
    collect: list[str] | None = None,
) -> AsyncIterator[str]:
    """Relay an engine's SSE chunks (batches of ``data: ...`` strings or error objects).

    The first JSON chunk carries the routing field; the stream ends with exactly one ``data: [DONE]``.
    A failure mid-stream, or the deadline passing (``deadline_s`` from now), ends it with an error
    event in OpenAI's shape before ``[DONE]`` (never a silent cut); the engine request is cancelled.
    ``on_end(usage, error_code)`` is called once at the end with the last usage seen. ``collect``, when
    given, receives the text of the first choice's deltas (for a stream that shadow evaluation sampled).
    """
    loop = asyncio.get_running_loop()
    end = None if deadline_s is None else loop.time() + deadline_s
    tagged, usage, failed = False, None, None
    batch = first
    try:
        while True:
            for chunk in batch:
                if not isinstance(chunk, str):  # an ErrorResponse mid-stream
                    failed = "engine_error"
                    logger.error("request %s: engine error mid-stream: %s", rid, chunk.error.message)
                    yield _sse_error(internal_error(rid, "the model failed mid-stream"))
                    continue
                if chunk.strip() == "data: [DONE]":
                    continue
                if not tagged and chunk.startswith("data: {"):
                    obj = json.loads(chunk[len("data: "):])
                    obj["tierroute"] = routed
                    chunk, tagged = f"data: {json.dumps(obj)}\n\n", True
                if '"usage": {' in chunk or '"usage":{' in chunk:
                    usage = json.loads(chunk[len("data: "):]).get("usage") or usage
                if collect is not None and chunk.startswith("data: {"):
                    collect.append(_delta_text(chunk))
                yield chunk
            try:
                left = None if end is None else max(0.0, end - loop.time())
                batch = await within(rest.__anext__(), left, lambda: rest.cancel())  # cancelled on the tier when given up on
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                failed = "timeout"
                yield _sse_error(timed_out(deadline_s or 0.0))
                break
            except Exception:
                logger.exception("request %s: stream failed mid-way", rid)
                failed = "stream_failed"
                yield _sse_error(internal_error(rid, "the model failed mid-stream"))
                break
        yield "data: [DONE]\n\n"
    finally:
        if on_end is not None:
            on_end(usage, failed)


def _delta_text(chunk: str) -> str:
    try:
        choices = json.loads(chunk[len("data: "):]).get("choices") or []
        return next((c.get("delta", {}).get("content") or "" for c in choices if c.get("index", 0) == 0), "")
    except (ValueError, AttributeError):
        return ""


def _sse_error(e: APIError) -> str:
    return f"data: {json.dumps(e.body())}\n\n"
