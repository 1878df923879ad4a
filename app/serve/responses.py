"""How a response says it was routed, without Ray: :class:`Served` and its shaping of answers.

* :class:`Served` -- the router's decision and what the ingress made of it; its ``reason`` (routed,
  bypass, degraded, fallback, over-cap) is derived here and only here (:meth:`Served.as_decided`), its
  ``path`` (routed, tier1, escalated, direct: :data:`PATHS`) and, for a cascaded request, the verifier's verdict;
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
from app.serve.headers import tier_header
from app.serve.tier_config import default_tier_name

logger = logging.getLogger("tierroute.ingress")

UNSCORED = ("bypass", "degraded")  # decisions made without scoring: their scorer is the reason
CASCADE_SCORER = "cascade"  # cascade mode: no pre-generation score, tier 1 first (reason routed)
# routed: not cascaded (route mode, opt-out, bypass, degraded); tier1: tier 1's answer after the verifier
# (accepted, or kept because the escalation was not made); escalated: tier 2 answered after tier 1;
# direct: cascade_routing sent it straight to tier 2; "cascade" only while tier 1 has not answered yet
PATHS = ("routed", "tier1", "escalated", "direct")


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
    path: str = "routed"
    verdict: Any = None  # app.verification.Verdict of tier 1's answer (cascade paths)
    escalation: str | None = None  # why tier 2 was wanted after tier 1: verifier, length, tier1-failed
    tier1_usage: dict | None = None  # tier 1's usage on an escalated request (its tokens are spent)
    names: dict[int, str] | None = None  # the tiers' names (default tier<k>)
    spent: dict[int, dict] | None = None  # a ladder's climb: the usage of each tier whose answer was not served

    @property
    def spent_by_tier(self) -> dict[int, dict]:
        """The usage of the tiers that answered but were not served (their tokens are spent): a climb's rungs, or tier 1's."""
        if self.spent is not None:
            return self.spent
        return {1: self.tier1_usage} if self.tier1_usage else {}

    def name_of(self, tier: int) -> str:
        """Tier ``tier``'s name (``tier<k>`` where none was given)."""
        return (self.names or {}).get(tier, default_tier_name(tier))

    @property
    def name(self) -> str:
        """The serving tier's name."""
        return self.name_of(self.tier)

    @property
    def scored(self) -> bool:
        """The decision came from scoring the request (also when another tier then served it)."""
        return self.decision.scorer not in UNSCORED + (CASCADE_SCORER,)

    @classmethod
    def as_decided(cls, d: Decision, model: str, key: str | None = None, names: dict[int, str] | None = None) -> "Served":
        """Served by the tier ``d`` names: reason ``bypass`` or ``degraded`` where its scorer says so, else ``routed``."""
        served = cls(d, d.tier, model, "routed", key=key, names=names)
        if d.scorer in UNSCORED:
            served.reason = d.scorer
        return served

    def moved(self, tier: int, model: str, reason: str, fallback: Fallback | None = None) -> None:
        """Served by ``tier`` instead of the decided one, because of ``reason`` (fallback, over-cap)."""
        self.tier, self.model, self.reason = tier, model, reason
        if fallback is not None:
            self.fallback = fallback


def decision_headers(s: Served) -> dict[str, str]:
    h = {
        "x-tierroute-tier": tier_header(s.tier, s.name),
        "x-tierroute-model": s.model,
        "x-tierroute-reason": s.reason,
        "x-tierroute-score": f"{s.decision.complexity_score:.4f}",
        "x-tierroute-router-latency-ms": f"{s.decision.router_latency_ms:.2f}",
    }
    if s.fallback is not None:
        h["x-tierroute-fallback"] = s.fallback.header()
    h["x-tierroute-path"] = s.path
    if s.verdict is not None:
        h["x-tierroute-verifier-score"] = f"{s.verdict.score:.4f}"
        if s.verdict.check is not None:
            h["x-tierroute-verifier-check"] = s.verdict.check
    if s.escalation is not None:
        h["x-tierroute-escalation"] = s.escalation
    return h


def tier1_tokens(s: Served) -> int | None:
    """Completion tokens tier 1 spent on a request tier 2 then answered (None otherwise)."""
    return None if s.tier1_usage is None else int(s.tier1_usage.get("completion_tokens") or 0)


def cascade_field(s: Served) -> dict[str, Any]:
    """The cascade part of the ``tierroute`` field: path, the verifier's verdict, tier-1 tokens spent."""
    v = s.verdict
    verifier = None if v is None else {"score": round(v.score, 6), "threshold": round(v.threshold, 6), "kind": v.kind}
    if v is not None and v.check is not None:  # the router LLM's check was wanted: consulted, or why not
        verifier["check"] = {"outcome": v.check}
        if v.check == "consulted":
            verifier["check"] |= {"p_no": round(v.check_p_no, 6), "score_alone": round(v.score_alone, 6)}
    out = {"path": s.path, "verifier": verifier, "escalation": s.escalation, "tier1_tokens": tier1_tokens(s)}
    if s.spent is not None:  # a ladder's climb: completion tokens of each tier passed on the way
        out["spent_tokens"] = {s.name_of(t): int(u.get("completion_tokens") or 0) for t, u in s.spent.items()}
    return out


def routed_field(s: Served) -> dict[str, Any]:
    """The ``tierroute`` field added to a response body (or to the first chunk of a stream)."""
    d = s.decision
    return {
        "tier": s.tier,
        "tier_name": s.name,
        "model": s.model,
        "reason": s.reason,
        "fallback": s.fallback.field() if s.fallback else None,
        "decided_tier": d.tier,
        **d.model_dump(exclude={"tier"}),
        **cascade_field(s),
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
