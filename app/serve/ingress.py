"""OpenAI-compatible HTTP ingress: the endpoints, over one module per concern.

``POST /v1/chat/completions``, ``POST /v1/completions`` (streaming and not),
``POST /v1/route`` (the decision alone), ``GET /v1/models``, ``GET /healthz``
(liveness), ``GET /readyz`` (200 only when every tier engine is healthy).

* the protocol — what a request asks for, errors, SSE tagging: :mod:`app.serve.protocol` (no Ray);
* the decision: :class:`app.serve.routing.RoutingService`;
* the calls to the tier engines: :class:`app.serve.tiers.Tiers`; when one fails: :mod:`app.serve.fallback`;
* input limits and the deadline: :mod:`app.serve.limits`; API keys and per-key limits: :mod:`app.serve.auth`;
* Prometheus metrics: :mod:`app.serve.metrics`; one JSON line per decision: :mod:`app.serve.decision_log`;
* shadow evaluation of a sampled share of routed requests, off the response path: :mod:`app.serve.shadow`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve
from ray.llm._internal.serve.core.ingress.utils import _sanitize_chat_completion_request
from ray.llm._internal.serve.core.configs.openai_api_models import ModelCard, ModelList
from ray.serve.llm.openai_api_models import ChatCompletionRequest, CompletionRequest

from app.serve import limits
from app.serve import protocol as p
from app.serve.auth import Key, KeyQuota, KeyRing
from app.serve.config import AppConfig
from app.serve.decision_log import log_decision
from app.serve.fallback import Fallback, TierFailure, other_tier
from app.serve.metrics import Metrics
from app.serve.routing import routing_service
from app.serve.shadow import OutcomeLog, Shadow
from app.serve.tiers import Tiers

logger = logging.getLogger("tierroute.ingress")

api = FastAPI(title="tierroute", description="Complexity-based routing of OpenAI requests to model tiers.")
p.install_error_handlers(api)


class TierrouteModelCard(ModelCard):
    """Ray Serve LLM's model card with OpenAI's ``created``."""

    created: int


class TierrouteModelList(ModelList):
    data: list[TierrouteModelCard]


def rejection_cause(e: p.APIError) -> str:
    """The ``cause`` tag of a rejected request's metric."""
    if e.code in ("rate_limit_exceeded", "overloaded"):
        return {"rate_limit_exceeded": "rate_limited", "overloaded": "overloaded"}[e.code]
    return {401: "unauthorized", 503: "unavailable", 504: "timeout", 500: "internal"}.get(e.status, "bad_request")


def _log_to_serve() -> None:
    """tierroute's loggers write where Serve's do (the replica's log file), at INFO."""
    serve_logger, ours = logging.getLogger("ray.serve"), logging.getLogger("tierroute")
    ours.setLevel(logging.INFO)
    if serve_logger.handlers:
        ours.handlers = list(serve_logger.handlers)
        ours.propagate = False


def shadow_of(cfg: AppConfig, tiers: Tiers, metrics: Metrics) -> Shadow | None:
    """The replica's shadow evaluator, or None when the config leaves it off."""
    spec = cfg.shadow
    if not spec.enabled:
        return None
    try:
        replica = serve.get_replica_context().replica_id.unique_id
    except Exception:  # not in a Serve replica (a unit test)
        replica = str(os.getpid())
    path = Path(spec.outcomes_path)
    log = OutcomeLog(path.with_name(f"{path.stem}-{replica}{path.suffix}"), spec.max_bytes, spec.backups)
    return Shadow(spec, tiers.model, tiers.ask, log, metrics.shadow)  # a job's calls are bounded by its timeout_s


@serve.deployment
@serve.ingress(api)
class Ingress:
    def __init__(self, config: dict, embedder, tier1, tier2, router_llm=None, keys: list[dict] | None = None):
        self.cfg = AppConfig.model_validate(config)
        _log_to_serve()
        if self.cfg.ingress.grpc_calls:  # by value over gRPC: no object refs are passed here
            embedder, tier1, tier2, router_llm = (
                h.options(_by_reference=False) if h is not None else None for h in (embedder, tier1, tier2, router_llm)
            )
        self.routing = routing_service(self.cfg, embedder, router_llm)
        self.tiers = Tiers({1: (self.cfg.tier1.model_id, tier1), 2: (self.cfg.tier2.model_id, tier2)})
        loaded = [Key.load(k) for k in keys or []]
        self.keys = KeyRing(loaded) if loaded else None
        self.quotas = {k.name: KeyQuota(k.limits) for k in loaded}
        self.metrics = Metrics(self.cfg.metrics)
        self.shadow = shadow_of(self.cfg, self.tiers, self.metrics)
        self.active = 0  # requests in this replica now (a stream until its end): one alone skips the batch queue

    # --- the steps of a request ----------------------------------------------
    def _admit(self) -> None:
        """The ingress's own bound: past ``max_concurrent_requests``, 429 with Retry-After."""
        ing = self.cfg.ingress
        if self.active > ing.max_concurrent_requests:  # this request is counted already
            raise p.overloaded(f"the router is at its limit of {ing.max_concurrent_requests} concurrent requests; retry shortly", ing.retry_after_s)

    def _key(self, request: Request) -> Key | None:
        if self.keys is None:
            return None
        key = self.keys.authenticate(request.headers.get("authorization"))
        self.quotas[key.name].admit()
        return key

    async def _body(self, request: Request) -> dict:
        return await p.read_json(request, self.cfg.ingress.max_body_bytes, self.cfg.ingress.max_json_depth)

    def _target(self, data: dict) -> int | None:
        return p.target(data, self.cfg.ingress.router_name, self.tiers.by_model)

    async def _guarded(self, request: Request, handler, streams: bool = False) -> Response:
        """Admission, key and deadline around ``handler(key, deadline_s, started)``; every error counted."""
        started = time.monotonic()
        self.active += 1
        handed_off = False
        try:
            self._admit()
            key = self._key(request)
            deadline_s = limits.timeout_of(request.headers.get("x-tierroute-timeout"), self.cfg.ingress.request_timeout_s)
            try:
                resp = await asyncio.wait_for(handler(key, deadline_s, started), deadline_s)
            except asyncio.TimeoutError:
                raise p.timed_out(deadline_s) from None
            handed_off = streams and isinstance(resp, StreamingResponse)
            return resp
        except p.APIError as e:
            self.metrics.rejected(rejection_cause(e))
            raise
        except Exception:
            self.metrics.rejected("internal")
            raise
        finally:
            if not handed_off:  # a stream counts until it ends (on_end in _forward)
                self.active -= 1

    async def _call(self, tier: int, kind: str, req, request: Request):
        """One attempt on ``tier``: the body (unary) or (first chunks, the rest) (stream), and the latency."""
        req.model = self.tiers.model[tier]
        t0 = time.perf_counter()
        timeout = self.cfg.fallback.tier_timeout_s
        if req.stream:
            out = await self.tiers.stream(tier, kind, req, request, timeout)
        else:
            out = await self.tiers.complete(tier, kind, req, request, timeout)
        return out, (time.perf_counter() - t0) * 1000

    def _tier_down(self, f: TierFailure) -> p.APIError:
        wait = self.cfg.ingress.retry_after_s
        if f.cause == "overloaded":
            return p.overloaded("the model tiers are at their queue limits; retry shortly", wait)
        return p.unavailable("no model tier can serve this request now; retry shortly", wait)

    async def _decide(self, text: str, target: int | None, key: Key | None) -> p.Served:
        if target is None:
            d = await self.routing.decide(text, alone=self.active <= 1)
        else:
            d = p.bypass(target, self.routing.threshold)
        served = p.Served.as_decided(d, self.tiers.model[d.tier], key.name if key else None)
        if key is not None and served.reason == "routed":
            tier, capped = self.quotas[key.name].cap(served.tier)
            if capped:
                served.tier, served.model, served.reason = tier, self.tiers.model[tier], "over-cap"
        return served

    async def _forward(
        self, kind: str, req, text: str, target: int | None, request: Request, key, deadline_s, started, messages: list | None = None
    ) -> Response:
        rid = p.request_id(request)
        served = await self._decide(text, target, key)
        # shadow evaluation samples routed chat requests before they are served (a stream keeps its text)
        shadowed = self.shadow is not None and messages is not None and served.reason == "routed" and self.shadow.sampled()
        try:
            out, tier_ms = await self._call(served.tier, kind, req, request)
        except TierFailure as f:
            alt = other_tier(served.tier, self.cfg.fallback)
            if alt is None:
                raise self._tier_down(f) from None
            logger.warning("request %s: tier %s failed (%s); tier %s serves it", rid, served.tier, f.cause, alt)
            served.fallback, served.reason = Fallback(served.tier, alt, f.cause), "fallback"
            served.tier, served.model = alt, self.tiers.model[alt]
            try:
                out, tier_ms = await self._call(alt, kind, req, request)
            except TierFailure as f2:
                raise self._tier_down(f2) from None
        headers = p.decision_headers(served)
        text_logged = text if self.cfg.ingress.log_prompts else None
        if not req.stream:
            body = out.model_dump(mode="json")
            body["tierroute"] = p.routed_field(served)
            self._record(rid, served, tier_ms, body.get("usage"), text_logged)
            if shadowed and served.reason == "routed":  # not when the decided tier failed and the other one served
                answer = (body.get("choices") or [{}])[0].get("message", {}).get("content")
                self.shadow.offer(served.tier, messages, answer, body.get("usage"), body["tierroute"])
            return JSONResponse(body, headers=headers)
        first, rest = out
        collected: list[str] | None = [] if shadowed and served.reason == "routed" else None
        routed = p.routed_field(served)

        def on_end(usage, error):
            self.active -= 1
            self._record(rid, served, tier_ms, usage, text_logged)
            if collected is not None and error is None:
                # a stream carries usage only when the client asked for it; else each content delta is a token
                usage = usage or {"completion_tokens": sum(1 for d in collected if d)}
                self.shadow.offer(served.tier, messages, "".join(collected), usage, routed)

        left = max(0.001, deadline_s - (time.monotonic() - started))
        sse = p.tag_sse(first, rest, routed, rid, left, on_end, collected)
        return StreamingResponse(sse, media_type="text/event-stream", headers=headers)

    def _record(self, rid: str, served: p.Served, tier_ms, usage, text) -> None:
        self.metrics.served(served, tier_ms, usage)
        if self.cfg.ingress.log_decisions:
            log_decision(rid, served, tier_ms, usage, text)

    # --- endpoints -----------------------------------------------------------
    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Response:
        async def handle(key, deadline_s, started):
            data = await self._body(request)
            target = self._target(data)
            limits.check_messages(data.get("messages"), self.cfg.ingress.max_messages)
            text = p.messages_text(data.get("messages"))
            limits.check_sampling(data, "chat")
            req = _sanitize_chat_completion_request(p.validate(ChatCompletionRequest, data))  # picklable content parts
            return await self._forward("chat", req, text, target, request, key, deadline_s, started, data.get("messages"))

        return await self._guarded(request, handle, streams=True)

    @api.post("/v1/completions")
    async def completions(self, request: Request) -> Response:
        async def handle(key, deadline_s, started):
            data = await self._body(request)
            target = self._target(data)
            text = p.prompt_text_of(data.get("prompt"))
            limits.check_sampling(data, "completions")
            return await self._forward("completions", p.validate(CompletionRequest, data), text, target, request, key, deadline_s, started)

        return await self._guarded(request, handle, streams=True)

    @api.post("/v1/route")
    async def route(self, request: Request) -> JSONResponse:
        async def handle(key, deadline_s, started):
            data = await self._body(request)
            limits.check_messages(data.get("messages"), self.cfg.ingress.max_messages)
            d = await self.routing.decide(p.route_text(data), alone=self.active <= 1)
            served = p.Served.as_decided(d, self.tiers.model[d.tier], key.name if key else None)
            body = {"model": served.model, "reason": served.reason, **d.model_dump()}
            if (state := self.routing.controller_state()) is not None:
                body["controller"] = state
            return JSONResponse(body, headers=p.decision_headers(served))

        return await self._guarded(request, handle)

    @api.get("/v1/models")
    async def models(self, request: Request) -> dict:
        if self.keys is not None:
            self.keys.authenticate(request.headers.get("authorization"))
        now = int(time.time())
        cards = [(self.cfg.ingress.router_name, {"routes_to": list(self.tiers.model.values())})]
        cards += [(mid, {"tier": t}) for t, mid in self.tiers.model.items()]
        data = [TierrouteModelCard(id=i, object="model", created=now, owned_by="tierroute", permission=[], metadata=m) for i, m in cards]
        return TierrouteModelList(data=data).model_dump()

    @api.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self) -> JSONResponse:
        status = await self.tiers.health()
        ok = all(v == "ready" for v in status.values())
        return JSONResponse({"status": "ready" if ok else "not ready", "tiers": status}, status_code=200 if ok else 503)

    # --- for operators and tests (handle calls, not on HTTP) ------------------
    async def stats(self) -> dict[str, int]:
        """Requests forwarded to each tier model."""
        return dict(self.tiers.forwarded)

    async def scoring_stats(self) -> dict[str, int]:
        """Prompts scored alone and in batches."""
        return dict(self.routing.scored)

    async def shadow_state(self) -> dict | None:
        """The shadow evaluator's state (None when it is off)."""
        return self.shadow.state() if self.shadow is not None else None

    async def rate(self, text: str) -> float:
        """The router LLM's rating of ``text`` in [0, 1]."""
        if self.routing.rate is None:
            raise RuntimeError("no router LLM is configured")
        return await self.routing.rate(text)
