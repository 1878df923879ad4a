"""The cascade step of the ingress (``routing.mode`` cascade or cascade_routing; docs/cascade.md).

A request the ingress cascades goes to tier 1 first (log-probabilities on, the answer capped at
``cascade.max_tier1_tokens``: :mod:`app.serve.answers`); the verifier (:class:`app.verification.verifier.Verifier`,
embedding with the router's own embed function) scores tier 1's answer; at or above the threshold, or
when the answer was cut at the cap, the request is escalated: tier 2 answers the client's original
request. Otherwise tier 1's answer is returned. Streaming: ``buffer`` (tier 1 unary, verified, the winner
streamed) or ``early`` (tier 1 streamed, its first ``early_tokens`` tokens held and verified; then
released, or tier 1 cancelled and tier 2 streamed: nothing of tier 1 reaches the client).

Bounds: tier 2 is given what is left of the request's deadline (a late tier 2 leaves tier 1's answer);
tier 1 down -> tier 2 where ``fallback.up``; tier 2 down on escalation -> tier 1's answer,
reason ``fallback``; a key past its tier-2 cap keeps tier 1's answer (reason ``over-cap``); the share
controller, when on, holds the escalation share by moving the verifier's threshold.

The router LLM's check (docs/verifier.md): when the verifier artifact has a fitted ``check`` and a router
LLM is configured, the Judge asks it whether tier 1's answer is correct and complete -- only for a score
within the check's band of the threshold -- within ``router_llm.timeout_s``; late or failed, the
verifier's score alone decides (logged, counted, and said in the response).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from vllm.entrypoints.generate.base.protocol import StreamOptions  # the engine's request field

from app.routing.controller import ShareController
from app.serve.answers import ChunkReader, Mapped, Replay, Tier1Answer, answer_of, reemit, strip_chunk, strip_logprobs, tier1_request, wants_logprobs
from app.serve.calls import within
from app.serve.config import AppConfig
from app.serve.fallback import Fallback, TierFailure, other_tier
from app.serve.requests import ParsedRequest
from app.serve.responses import Served, decision_headers, routed_field
from app.serve.routing_config import OPT_OUT_HEADER
from app.verification.artifact import load_verifier
from app.verification.verifier import Answer, Verdict, Verifier, answer_features

logger = logging.getLogger("tierroute.cascade")

ESCALATION_MARGIN_S = 0.1  # of the deadline, kept to answer with tier 1's answer when tier 2 is late


def direct_threshold(artifact, quantile: float) -> float:
    """The pre-generation score at ``quantile`` of calibration traffic (the inverse of ``artifact.quantile_of``)."""
    q = np.asarray(artifact.score_quantiles, dtype=float)
    return float(np.interp(quantile, np.linspace(0, 1, len(q)), q))


class Judge:
    """The verifier at serve time: tier 1's answer -> Verdict, with the threshold the share controller holds."""

    def __init__(self, cfg: AppConfig, embed, embedder_id: str | None = None, check=None, check_timeout_s: float = 0.0):
        """``check(request, answer)``: the router LLM's P(answer not good enough) (None: no router LLM configured),
        given ``check_timeout_s``; asked only where the artifact's check block says (:meth:`Verifier.wants_check`)."""
        c = cfg.routing.cascade
        artifact = load_verifier(c.verifier)
        if artifact.embedder is not None and embedder_id is not None and artifact.embedder.model_id != embedder_id:
            raise ValueError(f"routing.cascade.verifier: embeds with {artifact.embedder.model_id}, the router with {embedder_id}")
        tier1, tier2 = (r.spec.model_id for r in cfg.ladder)  # a cascade serves two tiers (AppConfig checks)
        if (artifact.pair.tier1, artifact.pair.tier2) != (tier1, tier2):
            logger.warning("the verifier was fitted for %s -> %s; the tiers are %s -> %s (docs/cascade.md)",
                           artifact.pair.tier1, artifact.pair.tier2, tier1, tier2)  # fmt: skip
        self.verifier = Verifier(artifact, c.threshold, execute=c.execute_code)
        self.controller = ShareController(cfg.controller, self.verifier.threshold) if cfg.controller.enabled else None
        self._embed = embed
        self._check, self.check_timeout_s = check, check_timeout_s
        self.checks: Counter[str] = Counter()  # the router LLM's checks: consulted, timeout, failed, not configured
        ck = artifact.check
        if ck is not None and ck.llm_weight > 0 and check is None:
            logger.warning("the verifier's check by the router LLM is fitted but no router LLM is configured: the score alone decides")

    @property
    def threshold(self) -> float:
        return self.controller.threshold if self.controller else self.verifier.threshold

    async def __call__(self, request_text: str, ans: Tier1Answer) -> Verdict | None:
        """The verdict on ``ans``, or None when the embedder failed (the caller degrades)."""
        a = Answer(request_text, ans.text, ans.logprobs or None, ans.tokens or None)
        feats = answer_features(a)  # once: which expert judges it, and its input
        embeddings = {}
        texts = self.verifier.texts(a, feats)
        if texts:
            try:
                embeddings = dict(zip(texts, await self._embed(texts)))
            except Exception:
                logger.exception("embedder failed; the verifier cannot judge this answer")
                return None
        v = await asyncio.to_thread(self.verifier.verdict, a, embeddings, feats)  # the execution check may run a sandbox
        v.threshold = self.threshold
        v.escalate = v.score >= v.threshold
        if self.verifier.wants_check(v.score, v.threshold):
            v = await self._checked(request_text, ans.text, v)
            self.checks[v.check] += 1
        if self.controller is not None:
            self.controller.observe(v.score)
        return v

    async def _checked(self, request_text: str, answer: str, v: Verdict) -> Verdict:
        """``v`` moved by the router LLM's check; unchanged (``v.check`` says why) when it is late, fails or is absent."""
        if self._check is None:
            v.check = "not configured"
            return v
        try:
            p_no = await asyncio.wait_for(self._check(request_text, answer), self.check_timeout_s)
        except asyncio.TimeoutError:
            logger.warning("router LLM check timed out after %ss; the verifier's score decides", self.check_timeout_s)
            v.check = "timeout"
            return v
        except Exception as e:  # a router LLM that is down must not fail the request
            logger.warning("router LLM check failed (%s); the verifier's score decides", type(e).__name__)
            logger.debug("router LLM check failure", exc_info=True)
            v.check = "failed"
            return v
        return self.verifier.with_check(v, p_no)


def cascade_of(host, cfg: AppConfig):
    """The cascade step of ``host`` (an Ingress, after its router service) in the cascade modes, else None: a
    :class:`Cascade` over two tiers, or a climb up a ladder (:class:`app.serve.ladder_cascade.LadderCascade`)."""
    if cfg.routing.mode == "route":
        return None
    if cfg.routing.ladder is not None:
        from app.serve.ladder_cascade import LadderCascade
        from app.verification.ladder import LadderJudge

        return LadderCascade(host, cfg, LadderJudge.load(cfg.routing.ladder))
    svc = host.router_service
    router_embedder = svc.router.artifact.embedder
    check = svc.rate.check if svc.rate is not None else None  # the router LLM, when configured
    judge = Judge(cfg, svc.embed, router_embedder.model_id if router_embedder else None, check, svc.llm_timeout_s)
    return Cascade(host, cfg, judge)


def escalation_timeout(cfg: AppConfig, a) -> float:
    """What a call after tier 1's may take: ``fallback.tier_timeout_s``, or what is left of the request's deadline
    (``a``: the admitted request) less :data:`ESCALATION_MARGIN_S`; at or below 0 when none is left."""
    return min(cfg.fallback.tier_timeout_s, a.left_s() - ESCALATION_MARGIN_S)


def wanted(c, request: Request) -> bool:
    """False when the client opted out (``x-tierroute-cascade: off``) and the config (``routing.cascade``: ``c``) lets it."""
    return not (c.allow_opt_out and request.headers.get(OPT_OUT_HEADER, "").strip().lower() == "off")


def answer_response(host, parsed: ParsedRequest, served: Served, body: dict, ms: float, a) -> Response:
    """A tier's unary answer ``body`` (asked for internally: log-probabilities on) as the client asked for it:
    log-probabilities only where it asked, re-emitted as SSE where it streams, tagged with how it was served."""
    req = parsed.engine_request
    if not wants_logprobs(req, parsed.endpoint):
        strip_logprobs(body)
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return host._stream_response(parsed, served, (reemit(body, parsed.endpoint, include_usage), Replay()), ms, a, False)
    body["tierroute"] = routed_field(served)
    host._record(a.rid, served, ms, body.get("usage"), parsed.text)
    return JSONResponse(body, headers=decision_headers(served))


class Cascade:
    """The cascade over an ingress ``host`` (its tiers, quotas, tier call, responses and records)."""

    def __init__(self, host, cfg: AppConfig, judge: Judge):
        self.host, self.cfg, self.judge = host, cfg, judge
        self.c = cfg.routing.cascade
        self.direct_threshold = direct_threshold(host.router_service.router.artifact, self.c.direct_quantile)

    def controller_state(self) -> dict | None:
        """The share controller's state when it holds the escalation share."""
        c = self.judge.controller
        return None if c is None else {**c.state(), "holds": "escalation share"}

    def wanted(self, request: Request) -> bool:
        return wanted(self.c, request)

    # --- the decision ----------------------------------------------------------------------
    async def decide(self, parsed: ParsedRequest, served: Served, ans: Tier1Answer, ours: bool, a) -> bool:
        """Set the verdict and escalation cause on ``served``; True when tier 2 should answer now."""
        v = await self.judge(parsed.text, ans)
        served.verdict = v
        if v is None:  # the verifier could not judge: the configured degraded tier
            served.reason = "degraded"
            escalate, served.escalation = self.cfg.ingress.degraded_tier == 2, "degraded"
        elif ans.finish_reason == "length" and ours:
            escalate, served.escalation = True, "length"
        else:
            escalate, served.escalation = v.escalate, "verifier" if v.escalate else None
        quota = self.host.quotas.get(a.key.name) if a.key is not None else None
        if quota is not None:
            _, capped = quota.cap(2 if escalate else 1)
            if capped:
                served.reason = "over-cap"
                return False
        return escalate

    async def _escalate(self, parsed: ParsedRequest, served: Served, request: Request, a, tier1_usage: dict | None):
        """Tier 2's answer to the client's request (a stream: its first chunks and the rest) and its latency,
        or None when it failed or would miss the deadline (``served`` then says so; tier 1's answer stands)."""
        timeout = escalation_timeout(self.cfg, a)
        try:
            if timeout <= 0:
                raise TierFailure(2, "timeout")
            served.tier, served.model = 2, self.host.tiers.model[2]
            out, ms = await self.host._call(served, parsed, request, timeout)
        except TierFailure as f:
            logger.warning("request %s: escalation to tier 2 failed (%s); tier 1's answer stands", a.rid, f.cause)
            served.tier, served.model, served.reason = 1, self.host.tiers.model[1], "fallback"
            served.fallback = Fallback(2, 1, f.cause)
            return None
        served.path, served.tier1_usage = "escalated", tier1_usage or {}
        return out, ms

    async def _tier1_failed(self, f: TierFailure, parsed: ParsedRequest, served: Served, request: Request, a) -> Response:
        """Tier 1 down: tier 2 answers where ``fallback.up`` allows, else the ingress's error."""
        if other_tier(1, self.cfg.fallback) is None:
            raise self.host._tier_down(f) from None
        logger.warning("request %s: tier 1 failed (%s); tier 2 serves it", a.rid, f.cause)
        served.moved(2, self.host.tiers.model[2], "fallback", Fallback(1, 2, f.cause))
        served.path, served.escalation, served.tier1_usage = "escalated", "tier1-failed", {}
        try:
            out, ms = await self.host._call(served, parsed, request, escalation_timeout(self.cfg, a))
        except TierFailure as f2:
            raise self.host._tier_down(f2) from None
        return self.host._respond(parsed, served, out, ms, a, shadowed=False)

    # --- unary and buffered streaming --------------------------------------------------------
    async def serve(self, parsed: ParsedRequest, served: Served, request: Request, a) -> Response:
        """Cascade ``parsed`` (``served`` decided tier 1): the response the client gets."""
        if parsed.engine_request.stream and self.c.stream == "early":
            return await self._serve_early(parsed, served, request, a)
        req = parsed.engine_request
        t1req, ours = tier1_request(req, parsed.endpoint, self.c.max_tier1_tokens, stream=False)
        t1req.model = self.host.tiers.model[1]
        t0 = time.perf_counter()
        try:
            resp = await self.host.tiers.complete(1, parsed.endpoint, t1req, request, self.cfg.fallback.tier_timeout_s)
        except TierFailure as f:
            return await self._tier1_failed(f, parsed, served, request, a)
        tier1_ms = (time.perf_counter() - t0) * 1000
        body = resp.model_dump(mode="json")
        ans = answer_of(body, parsed.endpoint)
        served.path = "tier1"
        if await self.decide(parsed, served, ans, ours, a):
            escalated = await self._escalate(parsed, served, request, a, ans.usage)
            if escalated is not None:
                return self.host._respond(parsed, served, *escalated, a, shadowed=False)
        return answer_response(self.host, parsed, served, body, tier1_ms, a)

    # --- early streaming ----------------------------------------------------------------------
    async def _serve_early(self, parsed: ParsedRequest, served: Served, request: Request, a) -> Response:
        """Tier 1 streamed; its first ``early_tokens`` tokens held and verified, then released or replaced by tier 2."""
        req = parsed.engine_request
        t1req, ours = tier1_request(req, parsed.endpoint, self.c.max_tier1_tokens, stream=True)
        t1req.model = self.host.tiers.model[1]
        t1req.stream_options = StreamOptions(include_usage=True, continuous_usage_stats=True)
        t0 = time.perf_counter()
        try:
            first, gen = await self.host.tiers.stream(1, parsed.endpoint, t1req, request, self.cfg.fallback.tier_timeout_s)
        except TierFailure as f:
            return await self._tier1_failed(f, parsed, served, request, a)
        held, reader = list(first), ChunkReader(parsed.endpoint)
        for c in held:
            reader.add(c)
        while reader.answer.n_tokens < self.c.early_tokens and reader.answer.finish_reason is None:
            try:
                batch = await within(gen.__anext__(), a.left_s(), gen.cancel)
            except StopAsyncIteration:
                break
            batch = batch if isinstance(batch, list) else [batch]
            held += batch
            for c in batch:
                reader.add(c)
        tier1_ms = (time.perf_counter() - t0) * 1000
        ans = reader.answer
        served.path = "tier1"
        if await self.decide(parsed, served, ans, ours, a):
            escalated = await self._escalate(parsed, served, request, a, ans.usage or {"completion_tokens": ans.n_tokens})
            if escalated is not None:
                gen.cancel()  # nothing of tier 1 reached the client; its engine request is aborted
                return self.host._respond(parsed, served, *escalated, a, shadowed=False)
        keep = self._keep(req, parsed.endpoint)
        return self.host._stream_response(parsed, served, ([keep(c) if isinstance(c, str) else c for c in held], Mapped(gen, keep)), tier1_ms, a, False)

    @staticmethod
    def _keep(req, endpoint: str):
        """What of tier 1's chunks the client gets: log-probabilities and usage only where it asked."""
        lp = wants_logprobs(req, endpoint)
        usage = bool(req.stream_options and req.stream_options.include_usage)

        def keep(chunk: str) -> str:
            return strip_chunk(chunk, logprobs=not lp, usage=not usage)

        return keep
