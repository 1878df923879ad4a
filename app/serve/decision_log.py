"""One structured JSON log line per served request (logger ``tierroute.decisions``).

Fields: request id, key name, tier, reason, fallback, score, kind, signals, router and tier
latency, tokens; the cascade's path, verifier score, threshold, kind and check, escalation cause and the
tokens tier 1 spent on an escalated request. The scored text only with ``ingress.log_prompts``; keys never (only their names).
"""

from __future__ import annotations

import json
import logging

logger = logging.getLogger("tierroute.decisions")


def decision_line(rid: str, served, tier_latency_ms: float | None, usage: dict | None, text: str | None = None) -> str:
    d = served.decision
    line = {
        "event": "tierroute.decision",
        "request_id": rid,
        "key": served.key,
        "tier": served.tier,
        "tier_name": served.name,
        "model": served.model,
        "reason": served.reason,
        "fallback": served.fallback.field() if served.fallback else None,
        "decided_tier": d.tier,
        "score": round(d.complexity_score, 6),
        "threshold": round(d.threshold, 6),
        "kind": d.kind,
        "scorer": d.scorer,
        "signals": d.signals,
        "llm_consulted": d.llm_consulted,
        "llm_fallback": d.llm_fallback,
        "router_latency_ms": round(d.router_latency_ms, 3),
        "tier_latency_ms": None if tier_latency_ms is None else round(tier_latency_ms, 3),
        "prompt_tokens": (usage or {}).get("prompt_tokens"),
        "completion_tokens": (usage or {}).get("completion_tokens"),
    }
    v = served.verdict
    line.update(
        path=served.path,
        verifier_score=None if v is None else round(v.score, 6),
        verifier_threshold=None if v is None else round(v.threshold, 6),
        verifier_kind=None if v is None else v.kind,
        verifier_check=None if v is None else v.check,  # the router LLM's check: consulted, timeout, failed, not configured
        escalation=served.escalation,
        tier1_tokens=None if served.tier1_usage is None else int(served.tier1_usage.get("completion_tokens") or 0),
    )
    if text is not None:
        line["prompt"] = text
    return json.dumps(line, separators=(",", ":"))


def log_decision(rid: str, served, tier_latency_ms: float | None, usage: dict | None, text: str | None = None) -> None:
    if logger.isEnabledFor(logging.INFO):
        logger.info(decision_line(rid, served, tier_latency_ms, usage, text))
