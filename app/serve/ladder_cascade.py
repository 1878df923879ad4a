"""Climbing a ladder of tiers: ``routing.mode: cascade`` over three or more tiers, ``routing.ladder`` a cascade-mode
ladder artifact (docs/ladder.md).

Tier 1 answers; boundary 1 of the ladder judges that answer (:class:`app.verification.ladder.LadderJudge`: P(tier 1
is not enough) against its threshold); judged sufficient, it is the client's answer; else tier 2 answers and
boundary 2 judges it; and so on up to the top tier, whose answer is final. The client sees one answer; every tier
passed on the way is paid (its tokens are in the cost and ``tierroute_escalation_tokens``; the ``tierroute`` field
lists them in ``spent_tokens``).

* Each tier below the top answers unary, capped at ``routing.cascade.max_tier1_tokens`` (an answer cut at the cap
  climbs); a streaming request gets the accepted answer re-emitted as SSE, or the top tier's stream (``buffer``).
* Each call gets what is left of the request's deadline (less a margin) and at most ``fallback.tier_timeout_s``;
  a tier that fails on the way is passed over (``fallback`` says so); a top tier that fails leaves the last answer
  in hand (reason ``fallback``), or, with none, the ingress's 503/429.
* A key past its cap on the next tier (``max_tier_shares``, ``max_tier2_share``) stops the climb (reason ``over-cap``).
* A climb has no pre-generation route, so the opt-out header ``x-tierroute-cascade: off`` is not honoured.
"""

from __future__ import annotations

import logging
import time

from fastapi import Request
from fastapi.responses import Response

from app.serve.answers import answer_of, tier1_request
from app.serve.cascade import answer_response, escalation_timeout
from app.serve.config import AppConfig
from app.serve.fallback import Fallback, TierFailure
from app.serve.requests import ParsedRequest
from app.serve.responses import Served
from app.verification.ladder import LadderJudge
from app.verification.verifier import Verdict

logger = logging.getLogger("tierroute.cascade")


class LadderCascade:
    """The climb over an ingress ``host`` (its tiers, quotas, tier call, responses and records)."""

    direct_threshold = None  # cascade_routing does not serve a ladder (AppConfig checks)

    def __init__(self, host, cfg: AppConfig, judge: LadderJudge):
        self.host, self.cfg, self.judge = host, cfg, judge
        self.c = cfg.routing.cascade

    def controller_state(self) -> None:
        return None  # the share controller does not hold a climb's shares (AppConfig checks)

    def wanted(self, request: Request) -> bool:
        """Always: a climb has no pre-generation route to opt out to (``x-tierroute-cascade: off`` is not honoured)."""
        return True

    def _timeout(self, a) -> float:
        return max(0.001, escalation_timeout(self.cfg, a))

    def _verdict(self, tier: int, score: float, climb: bool) -> Verdict:
        name = self.host.tiers.name[tier]
        return Verdict(score=score, escalate=climb, kind=name, threshold=float(self.judge.thresholds[tier - 1]))

    async def serve(self, parsed: ParsedRequest, served: Served, request: Request, a) -> Response:
        """Climb for ``parsed`` (``served`` decided tier 1): the response the client gets."""
        tiers, top = self.host.tiers, len(self.host.tiers.model)
        quota = self.host.quotas.get(a.key.name) if a.key is not None else None
        spent: dict[int, dict] = {}
        kept = None  # (tier, body, ms): the last answer in hand
        for k in range(1, top):
            rung, ours = tier1_request(parsed.engine_request, parsed.endpoint, self.c.max_tier1_tokens, stream=False)
            rung.model = tiers.model[k]
            t0 = time.perf_counter()
            try:
                resp = await tiers.complete(k, parsed.endpoint, rung, request, self._timeout(a))
            except TierFailure as f:
                logger.warning("request %s: tier %s failed (%s) on the climb; the next tier answers", a.rid, k, f.cause)
                served.fallback, served.reason, served.escalation = Fallback(k, k + 1, f.cause), "fallback", f"tier{k}-failed"
                continue
            ms = (time.perf_counter() - t0) * 1000
            body = resp.model_dump(mode="json")
            ans = answer_of(body, parsed.endpoint)
            score = self.judge.score(k, parsed.text, ans.text)
            cut = ans.finish_reason == "length" and ours
            climb = cut or not self.judge.sufficient(k, score)
            served.verdict = self._verdict(k, score, climb)
            if climb and quota is not None and quota.cap(k + 1, record=False)[1]:
                served.reason, climb = "over-cap", False
            if not climb:
                return self._answer(parsed, served, k, body, ms, a, spent, quota)
            served.escalation = "length" if cut else "verifier"
            spent[k] = ans.usage or {}
            kept = (k, body, ms)
        served.tier, served.model = top, tiers.model[top]
        try:
            out, ms = await self.host._call(served, parsed, request, self._timeout(a))
        except TierFailure as f:
            if kept is None:
                raise self.host._tier_down(f) from None
            logger.warning("request %s: the top tier failed (%s); tier %s's answer stands", a.rid, f.cause, kept[0])
            k, body, ms = kept
            del spent[k]
            served.reason, served.fallback = "fallback", Fallback(top, k, f.cause)
            return self._answer(parsed, served, k, body, ms, a, spent, quota)
        served.path, served.spent = "escalated", spent
        if quota is not None:
            quota.cap(top)
        return self.host._respond(parsed, served, out, ms, a, shadowed=False)

    def _answer(self, parsed: ParsedRequest, served: Served, tier: int, body: dict, ms: float, a, spent: dict, quota) -> Response:
        """Tier ``tier``'s answer ``body`` served to the client."""
        served.tier, served.model = tier, self.host.tiers.model[tier]
        served.path, served.spent = ("tier1" if tier == 1 else "escalated"), spent
        if quota is not None:
            quota.cap(tier)
        return answer_response(self.host, parsed, served, body, ms, a)
