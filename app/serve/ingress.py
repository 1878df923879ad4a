"""OpenAI-compatible HTTP ingress: the endpoints, over one module per concern.

``POST /v1/chat/completions``, ``POST /v1/completions`` (streaming and not),
``POST /v1/route`` (the decision alone), ``GET /v1/models``, ``GET /healthz``
(liveness), ``GET /readyz`` (200 only when every tier engine is healthy).

A request goes: admission, key and deadline (:meth:`Ingress._guarded`) -> the body read and parsed
by its endpoint's one parse step (:mod:`app.serve.requests`) -> the decision
(:class:`app.serve.router_service.RouterService`) and how it is served (:class:`app.serve.responses.Served`)
-> the tier call (:class:`app.serve.tiers.Tiers`; when one fails: :mod:`app.serve.fallback`) -> the
response shaped by :mod:`app.serve.responses`. Errors in OpenAI's shape: :mod:`app.serve.errors`;
API keys and per-key limits: :mod:`app.serve.auth`; Prometheus metrics: :mod:`app.serve.prometheus`;
one JSON line per decision: :mod:`app.serve.decision_log`; shadow evaluation of a sampled share of
routed requests, off the response path: :mod:`app.serve.shadow`. In the cascade modes
(``routing.mode``), a routed request tier 1 is to answer first goes through :mod:`app.serve.cascade`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve

from app.routing.router import Decision
from app.serve import errors
from app.serve.auth import Key, KeyQuota, KeyRing
from app.serve.cascade import cascade_of
from app.serve.config import AppConfig, IngressConfig, is_remote
from app.serve.decision_log import log_decision
from app.serve.errors import APIError, request_id
from app.serve.fallback import Fallback, TierFailure, fallback_order
from app.serve.prometheus import Metrics
from app.serve.ray_llm import ModelCard, ModelList
from app.serve.requests import ParsedRequest, parse_chat, parse_completions, parse_route, read_json, timeout_of
from app.serve.responses import CASCADE_SCORER, Served, bypass, decision_headers, routed_field, tag_sse
from app.serve.router_service import router_service
from app.serve.shadow import OutcomeLog, Shadow
from app.serve.tiers import Tiers

logger = logging.getLogger("tierroute.ingress")

Parse = Callable[[dict, IngressConfig, dict[str, int]], ParsedRequest]  # an endpoint's one parse step

api = FastAPI(title="tierroute", description="Complexity-based routing of OpenAI requests to model tiers.")
errors.install_error_handlers(api)


@dataclass
class Admitted:
    """A request past admission: its id, API key (None without auth), deadline and start time."""

    rid: str
    key: Key | None
    deadline_s: float
    started: float

    def left_s(self) -> float:
        return max(0.001, self.deadline_s - (time.monotonic() - self.started))


class TierrouteModelCard(ModelCard):
    """Ray Serve LLM's model card with OpenAI's ``created``."""

    created: int


class TierrouteModelList(ModelList):
    data: list[TierrouteModelCard]


def rejection_cause(e: APIError) -> str:
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
    shadow_cfg = cfg.shadow
    if not shadow_cfg.enabled:
        return None
    try:
        replica = serve.get_replica_context().replica_id.unique_id
    except Exception:  # not in a Serve replica (a unit test)
        replica = str(os.getpid())
    path = Path(shadow_cfg.outcomes_path)
    log = OutcomeLog(path.with_name(f"{path.stem}-{replica}{path.suffix}"), shadow_cfg.max_bytes, shadow_cfg.backups)
    return Shadow(shadow_cfg, tiers.model, tiers.ask, log, metrics.shadow)  # a job's calls are bounded by its timeout_s


@serve.deployment
@serve.ingress(api)
class Ingress:
    def __init__(self, config: dict, embedder, tiers: list, router_llm=None, keys: list[dict] | None = None):
        """``tiers``: the tier deployments' handles, cheapest first (one per tier of ``config``'s ladder)."""
        self.cfg = AppConfig.model_validate(config)
        _log_to_serve()
        if self.cfg.ingress.grpc_calls:  # by value over gRPC: no object refs are passed here
            embedder, router_llm = (h.options(_by_reference=False) if h is not None else None for h in (embedder, router_llm))
            tiers = [h.options(_by_reference=False) for h in tiers]
        self.router_service = router_service(self.cfg, embedder, router_llm)
        ladder = self.cfg.ladder
        remote = frozenset(r.index for r in ladder if is_remote(r.spec))
        self.tiers = Tiers({r.index: (r.spec.model_id, h) for r, h in zip(ladder, tiers)}, remote, {r.index: r.name for r in ladder})
        loaded = [Key.load(k) for k in keys or []]
        self.keys = KeyRing(loaded) if loaded else None
        self.quotas = {k.name: KeyQuota(k.limits, tier_index=self.tiers.by_name) for k in loaded}
        self.metrics = Metrics(self.cfg.metrics, {r.index: r.price for r in ladder})
        self.shadow = shadow_of(self.cfg, self.tiers, self.metrics)
        self.cascade = cascade_of(self, self.cfg)  # None in route mode
        self.direct_threshold = self.cascade.direct_threshold if self.cascade else None
        self.active = 0  # requests in this replica now (a stream until its end): one alone skips the batch queue

    # --- the steps of a request ----------------------------------------------
    def _admit(self) -> None:
        """The ingress's own bound: past ``max_concurrent_requests``, 429 with Retry-After."""
        ing = self.cfg.ingress
        if self.active > ing.max_concurrent_requests:  # this request is counted already
            raise errors.overloaded(f"the router is at its limit of {ing.max_concurrent_requests} concurrent requests; retry shortly", ing.retry_after_s)

    def _key(self, request: Request) -> Key | None:
        if self.keys is None:
            return None
        key = self.keys.authenticate(request.headers.get("authorization"))
        self.quotas[key.name].admit()
        return key

    async def _guarded(self, request: Request, parse: Parse, streams: bool = False) -> Response:
        """Admission, key and deadline around the request's handling by ``parse`` (its endpoint's parse
        step); every error counted."""
        started = time.monotonic()
        self.active += 1
        handed_off = False
        try:
            self._admit()
            key = self._key(request)
            deadline_s = timeout_of(request.headers.get("x-tierroute-timeout"), self.cfg.ingress.request_timeout_s)
            admitted = Admitted(request_id(request), key, deadline_s, started)
            try:
                resp = await asyncio.wait_for(self._handle(request, parse, admitted), deadline_s)
            except asyncio.TimeoutError:
                raise errors.timed_out(deadline_s) from None
            handed_off = streams and isinstance(resp, StreamingResponse)
            return resp
        except APIError as e:
            self.metrics.rejected(rejection_cause(e))
            raise
        except Exception:
            self.metrics.rejected("internal")
            raise
        finally:
            if not handed_off:  # a stream counts until it ends (on_end in _stream_response)
                self.active -= 1

    async def _handle(self, request: Request, parse: Parse, a: Admitted) -> Response:
        """The body, parsed by its endpoint's one step; then the decision alone (/v1/route) or the tier's answer."""
        ing = self.cfg.ingress
        parsed = parse(await read_json(request, ing.max_body_bytes, ing.max_json_depth), ing, self.tiers.by_model)
        if parsed.endpoint == "route":
            return await self._route_only(parsed, a)
        cascading = self.cascade is not None and parsed.target is None and self.cascade.wanted(request)
        served = await self._assign(parsed, a.key, cascading)
        if served.path == "cascade":
            return await self.cascade.serve(parsed, served, request, a)
        return await self._forward(parsed, served, request, a)

    async def _decide(self, parsed: ParsedRequest, cascading: bool) -> Decision:
        """The pre-generation decision: bypass (a tier's model named), none (cascade mode), or the router's
        (cascade_routing: tier 2 only at or above its direct threshold)."""
        if parsed.target is not None:
            return bypass(parsed.target, self.router_service.threshold)
        if not cascading:
            return await self.router_service.route(parsed.text, alone=self.active <= 1)
        if self.cfg.routing.mode == "cascade":
            return Decision(tier=1, complexity_score=0.0, confidence=0.0, threshold=1.0, scorer=CASCADE_SCORER, signals={})
        return await self.router_service.route(parsed.text, alone=self.active <= 1, threshold=self.direct_threshold)

    async def _assign(self, parsed: ParsedRequest, key: Key | None, cascading: bool = False) -> Served:
        """Which tier serves ``parsed``: its target, else the router's decision; a key's tier-2 cap may move it.
        A cascaded request tier 1 answers first has path ``cascade`` (its cap is counted by the cascade)."""
        d = await self._decide(parsed, cascading)
        served = Served.as_decided(d, self.tiers.model[d.tier], key.name if key else None, self.tiers.name)
        if cascading and served.reason == "routed":
            served.path = "direct" if d.tier == 2 else "cascade"
        if key is not None and served.reason == "routed" and served.path != "cascade":
            tier, capped = self.quotas[key.name].cap(served.tier)
            if capped:
                served.moved(tier, self.tiers.model[tier], "over-cap")
                served.path = "routed"
        return served

    async def _call(self, served: Served, parsed: ParsedRequest, request: Request, timeout: float | None = None):
        """One attempt on ``served.tier`` (within ``timeout``, default ``fallback.tier_timeout_s``): the body
        (unary) or (first chunks, the rest) (stream), and the latency."""
        req, tier = parsed.engine_request, served.tier
        req.model = self.tiers.model[tier]
        t0 = time.perf_counter()
        timeout = self.cfg.fallback.tier_timeout_s if timeout is None else timeout
        if req.stream:
            out = await self.tiers.stream(tier, parsed.endpoint, req, request, timeout)
        else:
            out = await self.tiers.complete(tier, parsed.endpoint, req, request, timeout)
        return out, (time.perf_counter() - t0) * 1000

    def _tier_down(self, f: TierFailure) -> APIError:
        wait = f.retry_after(self.cfg.ingress.retry_after_s)  # a remote tier's Retry-After, else the ingress's
        if f.cause == "overloaded":
            return errors.overloaded("the model tiers are at their queue limits; retry shortly", wait)
        return errors.unavailable("no model tier can serve this request now; retry shortly", wait)

    async def _call_or_fall_back(self, served: Served, parsed: ParsedRequest, request: Request, rid: str):
        """The decided tier's answer; where it failed, the first tier of its fallback order that answers
        (:func:`app.serve.fallback.fallback_order`: down the ladder, then up where configured)."""
        try:
            return await self._call(served, parsed, request)
        except TierFailure as f:
            first, failed = f, f
        for alt in fallback_order(first.tier, len(self.tiers.model), self.cfg.fallback):
            logger.warning("request %s: tier %s failed (%s); tier %s serves it", rid, failed.tier, failed.cause, alt)
            served.moved(alt, self.tiers.model[alt], "fallback", Fallback(first.tier, alt, first.cause))
            try:
                return await self._call(served, parsed, request)
            except TierFailure as f:
                failed = f
        raise self._tier_down(failed) from None

    async def _forward(self, parsed: ParsedRequest, served: Served, request: Request, a: Admitted) -> Response:
        """``parsed`` sent to the tier ``served`` names (or the fallback tier); the answer tagged with how it was served."""
        # shadow evaluation samples routed chat requests before they are served (a stream keeps its text)
        shadowed = self.shadow is not None and parsed.messages is not None and served.reason == "routed" and self.shadow.sampled()
        out, tier_ms = await self._call_or_fall_back(served, parsed, request, a.rid)
        shadowed = shadowed and served.reason == "routed"  # not when the decided tier failed and the other one served
        return self._respond(parsed, served, out, tier_ms, a, shadowed)

    def _respond(self, parsed: ParsedRequest, served: Served, out, tier_ms: float, a: Admitted, shadowed: bool) -> Response:
        """A tier's answer (a body, or a stream's first chunks and the rest) tagged with how it was served."""
        if parsed.engine_request.stream:
            return self._stream_response(parsed, served, out, tier_ms, a, shadowed)
        body = out.model_dump(mode="json")
        body["tierroute"] = routed_field(served)
        self._record(a.rid, served, tier_ms, body.get("usage"), parsed.text)
        if shadowed:
            answer = (body.get("choices") or [{}])[0].get("message", {}).get("content")
            self.shadow.offer(served.tier, parsed.messages, answer, body.get("usage"), body["tierroute"])
        return JSONResponse(body, headers=decision_headers(served))

    def _stream_response(self, parsed: ParsedRequest, served: Served, out, tier_ms: float, a: Admitted, shadowed: bool) -> Response:
        first, rest = out
        collected: list[str] | None = [] if shadowed else None
        routed = routed_field(served)

        def on_end(usage, error):
            self.active -= 1
            self._record(a.rid, served, tier_ms, usage, parsed.text)
            if collected is not None and error is None:
                # a stream carries usage only when the client asked for it; else each content delta is a token
                usage = usage or {"completion_tokens": sum(1 for d in collected if d)}
                self.shadow.offer(served.tier, parsed.messages, "".join(collected), usage, routed)

        sse = tag_sse(first, rest, routed, a.rid, a.left_s(), on_end, collected)
        return StreamingResponse(sse, media_type="text/event-stream", headers=decision_headers(served))

    def _record(self, rid: str, served: Served, tier_ms, usage, text: str) -> None:
        self.metrics.served(served, tier_ms, usage)
        if self.cfg.ingress.log_decisions:
            log_decision(rid, served, tier_ms, usage, text if self.cfg.ingress.log_prompts else None)

    async def _route_only(self, parsed: ParsedRequest, a: Admitted) -> JSONResponse:
        """``/v1/route``: the decision alone."""
        direct = self.direct_threshold if self.cfg.routing.mode == "cascade_routing" else None  # tier 2 = direct
        d = await self.router_service.route(parsed.text, alone=self.active <= 1, threshold=direct)
        served = Served.as_decided(d, self.tiers.model[d.tier], a.key.name if a.key else None, self.tiers.name)
        body = {"model": served.model, "tier_name": served.name, "reason": served.reason, **d.model_dump()}
        state = self.router_service.controller_state() or (self.cascade.controller_state() if self.cascade else None)
        if state is not None:
            body["controller"] = state
        return JSONResponse(body, headers=decision_headers(served))

    # --- endpoints -----------------------------------------------------------
    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Response:
        return await self._guarded(request, parse_chat, streams=True)

    @api.post("/v1/completions")
    async def completions(self, request: Request) -> Response:
        return await self._guarded(request, parse_completions, streams=True)

    @api.post("/v1/route")
    async def route(self, request: Request) -> JSONResponse:
        return await self._guarded(request, parse_route)

    @api.get("/v1/models")
    async def models(self, request: Request) -> dict:
        if self.keys is not None:
            self.keys.authenticate(request.headers.get("authorization"))
        now = int(time.time())
        cards = [(self.cfg.ingress.router_name, {"routes_to": list(self.tiers.model.values())})]
        cards += [(mid, {"tier": t, "name": self.tiers.name[t]}) for t, mid in self.tiers.model.items()]
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
        return dict(self.router_service.scored)

    async def shadow_state(self) -> dict | None:
        """The shadow evaluator's state (None when it is off)."""
        return self.shadow.state() if self.shadow is not None else None

    async def rate(self, text: str) -> float:
        """The router LLM's rating of ``text`` in [0, 1]."""
        if self.router_service.rate is None:
            raise RuntimeError("no router LLM is configured")
        return await self.router_service.rate(text)
