"""OpenAI-compatible HTTP ingress: the endpoints, over one module per concern.

``POST /v1/chat/completions``, ``POST /v1/completions`` (streaming and not),
``POST /v1/route`` (the decision alone), ``GET /v1/models``, ``GET /healthz``
(liveness), ``GET /readyz`` (200 only when every tier engine is healthy).

* the protocol — what a request asks for, errors, SSE tagging: :mod:`app.serve.protocol` (no Ray);
* the decision: :class:`app.serve.routing.RoutingService`;
* the calls to the tier engines: :class:`app.serve.tiers.Tiers`.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve
from ray.llm._internal.serve.core.ingress.utils import _sanitize_chat_completion_request
from ray.llm._internal.serve.core.configs.openai_api_models import ModelCard, ModelList
from ray.serve.llm.openai_api_models import ChatCompletionRequest, CompletionRequest

from app.serve import protocol as p
from app.serve.config import AppConfig
from app.serve.routing import routing_service
from app.serve.tiers import Tiers

api = FastAPI(title="tierroute", description="Complexity-based routing of OpenAI requests to model tiers.")
p.install_error_handlers(api)


class TierrouteModelCard(ModelCard):
    """Ray Serve LLM's model card with OpenAI's ``created``."""

    created: int


class TierrouteModelList(ModelList):
    data: list[TierrouteModelCard]


@serve.deployment
@serve.ingress(api)
class Ingress:
    def __init__(self, config: dict, embedder, tier1, tier2, router_llm=None):
        self.cfg = AppConfig.model_validate(config)
        if self.cfg.ingress.grpc_calls:  # by value over gRPC: no object refs are passed here
            embedder, tier1, tier2, router_llm = (
                h.options(_by_reference=False) if h is not None else None for h in (embedder, tier1, tier2, router_llm)
            )
        self.routing = routing_service(self.cfg, embedder, router_llm)
        self.tiers = Tiers({1: (self.cfg.tier1.model_id, tier1), 2: (self.cfg.tier2.model_id, tier2)})
        self.active = 0  # requests in this replica now: one alone skips the batch queue

    @contextmanager
    def _counted(self):
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1

    async def _body(self, request: Request) -> dict:
        return await p.read_json(request, self.cfg.ingress.max_body_bytes)

    def _target(self, data: dict) -> int | None:
        return p.target(data, self.cfg.ingress.router_name, self.tiers.by_model)

    async def _forward(self, kind: str, req, text: str, target: int | None, request: Request) -> Response:
        d = await self.routing.decide(text, alone=self.active <= 1) if target is None else p.bypass(target, self.routing.threshold)
        model = self.tiers.model[d.tier]
        req.model = model
        routed, headers = p.routed_field(d, model), p.decision_headers(d, model)
        if not req.stream:
            body = (await self.tiers.complete(d.tier, kind, req, request)).model_dump(mode="json")
            body["tierroute"] = routed
            return JSONResponse(body, headers=headers)
        first, rest = await self.tiers.stream(d.tier, kind, req, request)
        return StreamingResponse(p.tag_sse(first, rest, routed), media_type="text/event-stream", headers=headers)

    # --- endpoints -----------------------------------------------------------
    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Response:
        with self._counted():
            data = await self._body(request)
            target = self._target(data)
            text = p.messages_text(data.get("messages"))
            req = _sanitize_chat_completion_request(p.validate(ChatCompletionRequest, data))  # picklable content parts
            return await self._forward("chat", req, text, target, request)

    @api.post("/v1/completions")
    async def completions(self, request: Request) -> Response:
        with self._counted():
            data = await self._body(request)
            target = self._target(data)
            text = p.prompt_text_of(data.get("prompt"))
            return await self._forward("completions", p.validate(CompletionRequest, data), text, target, request)

    @api.post("/v1/route")
    async def route(self, request: Request) -> JSONResponse:
        with self._counted():
            d = await self.routing.decide(p.route_text(await self._body(request)), alone=self.active <= 1)
            model = self.tiers.model[d.tier]
            body = {"model": model, **d.model_dump()}
            if (state := self.routing.controller_state()) is not None:
                body["controller"] = state
            return JSONResponse(body, headers=p.decision_headers(d, model))

    @api.get("/v1/models")
    async def models(self) -> dict:
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

    async def rate(self, text: str) -> float:
        """The router LLM's rating of ``text`` in [0, 1]."""
        if self.routing.rate is None:
            raise RuntimeError("no router LLM is configured")
        return await self.routing.rate(text)
