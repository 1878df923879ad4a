"""OpenAI-compatible HTTP ingress: validate, route, forward to a tier, say how it was routed.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions`` (streaming and
not), ``POST /v1/route`` (the decision alone), ``GET /v1/models``, ``GET /healthz``
(liveness), ``GET /readyz`` (200 only when every tier engine is healthy).

Every error is in OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``;
a request that fails validation never reaches a tier.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from contextlib import contextmanager
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from ray import serve
from ray.serve.llm.openai_api_models import ChatCompletionRequest, CompletionRequest

from app.routing.artifact import load_artifact
from app.routing.router import Decision, EmbeddingScores, Router
from app.routing.scorers import RATING_CHOICES, parse_rating, rating_messages, rating_score
from app.routing.text import prompt_text
from app.serve.config import AppConfig

api = FastAPI(title="tierroute", description="Complexity-based routing of OpenAI requests to model tiers.")


class APIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status)


@api.exception_handler(APIError)
async def _api_error(_: Request, exc: APIError) -> JSONResponse:
    return exc.response()


@api.exception_handler(Exception)
async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    return APIError(500, f"internal error: {type(exc).__name__}: {exc}", "server_error").response()


def validation_error(e: ValidationError) -> APIError:
    err = e.errors()[0]
    param = ".".join(str(p) for p in err["loc"]) or None
    return APIError(400, f"{param}: {err['msg']}" if param else err["msg"], param=param)


def raise_engine_error(resp) -> None:
    """An engine's ``ErrorResponse`` (bad parameters, prompt too long, ...) as an APIError."""
    if hasattr(resp, "error"):
        e = resp.error
        raise APIError(int(e.code), e.message, e.type, getattr(e, "param", None))


def decision_headers(d: Decision, model: str) -> dict[str, str]:
    return {
        "x-tierroute-tier": str(d.tier),
        "x-tierroute-model": model,
        "x-tierroute-score": f"{d.complexity_score:.4f}",
        "x-tierroute-router-latency-ms": f"{d.router_latency_ms:.2f}",
    }


async def decide(router: Router, signals, rate, text: str, timeout_s: float) -> Decision:
    """Score, and consult the router LLM only inside the uncertainty band.

    ``signals(text)`` (embedding signals of one prompt, :class:`EmbeddingScores`) and
    ``rate(text)`` (the LLM's rating in [0, 1]) are awaitables. A rating that
    is late or fails falls back to the embedding score, and the decision says why.
    """
    t0 = time.perf_counter()
    sig = await signals(text)
    llm, fallback = None, None
    if router.wants_llm(float(sig.quantile[0])):
        if rate is None:
            fallback = "router LLM not configured"
        else:
            try:
                llm = await asyncio.wait_for(rate(text), timeout_s)
            except asyncio.TimeoutError:
                fallback = f"router LLM timed out after {timeout_s}s"
            except Exception as e:  # an LLM that is down must not fail the request
                fallback = f"router LLM failed: {type(e).__name__}: {e}"
    return router.decide(sig, llm, fallback, started=t0)


@serve.deployment
@serve.ingress(api)
class Ingress:
    def __init__(self, config: dict, embedder, tier1, tier2, router_llm=None):
        self.cfg = AppConfig.model_validate(config)
        self.router = Router(load_artifact(self.cfg.artifact))
        if self.cfg.ingress.grpc_calls:  # by value over gRPC: no object refs are passed here
            embedder, tier1, tier2, router_llm = (
                h.options(_by_reference=False) if h is not None else None for h in (embedder, tier1, tier2, router_llm)
            )
        if embedder is None:  # embedder.colocate: the model runs in this replica, one hop fewer
            from app.routing.embed import Embedder

            self._embedder = Embedder(self.cfg.embedder.embedder)
        self.signals.set_max_batch_size(self.cfg.embedder.max_batch_size)
        self.signals.set_batch_wait_timeout_s(self.cfg.embedder.batch_wait_timeout_s)
        self.active = 0  # requests in this replica now (see decide)
        self.scored: Counter[str] = Counter()  # requests scored alone / in batches
        self.tiers = {1: (self.cfg.tier1.model_id, tier1), 2: (self.cfg.tier2.model_id, tier2)}
        # Method handles made once: building one per request costs measurable CPU.
        self.unary = {(t, k): getattr(h, f"{k}_once") for t, (_, h) in self.tiers.items() for k in ("chat", "completions")}
        self.streams = {(t, k): getattr(h.options(stream=True), k) for t, (_, h) in self.tiers.items() for k in ("chat", "completions")}
        self.rate_call = router_llm.chat_once if router_llm is not None else None
        self.embed_call = embedder.embed if embedder is not None else None
        self.by_model = {mid: tier for tier, (mid, _) in self.tiers.items()}
        self.forwarded: Counter[str] = Counter()

    @contextmanager
    def _counted(self):
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1

    # --- request parsing -----------------------------------------------------
    async def _json(self, request: Request) -> dict[str, Any]:
        limit = self.cfg.ingress.max_body_bytes
        if int(request.headers.get("content-length") or 0) > limit:
            raise APIError(413, f"request body is larger than {limit} bytes", code="request_too_large")
        raw = await request.body()
        if len(raw) > limit:
            raise APIError(413, f"request body is larger than {limit} bytes", code="request_too_large")
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise APIError(400, f"request body is not valid JSON: {e}", code="invalid_json") from None
        if not isinstance(data, dict):
            raise APIError(400, "request body must be a JSON object", code="invalid_json")
        return data

    def _target(self, model: str) -> int | None:
        """None: route by complexity; 1/2: the tier named by its model id."""
        if model == self.cfg.ingress.router_name:
            return None
        if model in self.by_model:
            return self.by_model[model]
        known = ", ".join([self.cfg.ingress.router_name, *self.by_model])
        raise APIError(404, f"model {model!r} does not exist; available: {known}", param="model", code="model_not_found")

    # --- routing -------------------------------------------------------------
    async def _score(self, texts: list[str]) -> EmbeddingScores:
        if self.embed_call is None:
            emb = self._embedder.encode(texts)
        else:
            emb = await self.embed_call.remote(texts)
        return self.router.score_embeddings(emb, texts)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def signals(self, texts: list[str]) -> list[EmbeddingScores]:
        """Embedding signals of concurrent requests, embedded and scored as one batch."""
        self.scored["batched"] += len(texts)
        sig = await self._score(texts)
        return [sig.row(i) for i in range(len(texts))]

    async def _signals_alone(self, text: str) -> EmbeddingScores:
        self.scored["alone"] += 1
        return await self._score([text])

    async def rate(self, text: str) -> float:
        """The router LLM's rating of ``text`` in [0, 1] (expected value over the constrained 0-10 scale)."""
        spec = self.cfg.router_llm
        req = ChatCompletionRequest(
            model=spec.model_id, messages=rating_messages(text), max_tokens=2, temperature=0.0,
            logprobs=True, top_logprobs=len(RATING_CHOICES), structured_outputs={"choice": list(RATING_CHOICES)},
        )  # fmt: skip
        resp = await self.rate_call.remote(req, None)
        if hasattr(resp, "error"):
            raise RuntimeError(resp.error.message)
        choice = resp.choices[0]
        lp = choice.logprobs.content if choice.logprobs else None
        if lp:
            try:
                return rating_score({t.token: t.logprob for t in lp[0].top_logprobs})
            except ValueError:
                pass
        return rating_score(parse_rating(choice.message.content or ""))

    async def decide(self, text: str) -> Decision:
        spec = self.cfg.router_llm
        rate = self.rate if self.rate_call is not None and spec and spec.enabled else None
        # A request alone in the replica skips the batch queue (~0.7 ms on 2 cores);
        # under load, concurrent requests are embedded and scored together.
        signals = self.signals if self.active > 1 else self._signals_alone
        return await decide(self.router, signals, rate, text, spec.timeout_s if spec else 0.0)

    async def stats(self) -> dict[str, int]:
        """Requests forwarded to each tier (for operators and tests; not on HTTP)."""
        return dict(self.forwarded)

    async def scoring_stats(self) -> dict[str, int]:
        """Requests scored alone and in batches (for operators and tests; not on HTTP)."""
        return dict(self.scored)

    # --- forwarding ----------------------------------------------------------
    async def _forward(self, kind: str, data: dict, request_cls) -> Response:
        model = data.get("model")
        if not isinstance(model, str):
            raise APIError(400, "model: a string is required", param="model")
        target = self._target(model)
        try:
            req = request_cls.model_validate(data)
        except ValidationError as e:
            raise validation_error(e) from None
        if kind == "chat":
            try:
                text = prompt_text(data["messages"])
            except (ValueError, TypeError) as e:
                raise APIError(400, str(e), param="messages") from None
        else:
            prompt = req.prompt
            text = prompt_text(prompt if isinstance(prompt, str) else " ".join(map(str, prompt)))
        decision = await self.decide(text) if target is None else None
        tier = decision.tier if decision else target
        tier_model = self.tiers[tier][0]
        if decision is None:  # bypass: say so in the same shape
            decision = Decision(tier=tier, complexity_score=0.0, confidence=1.0, threshold=self.router.threshold, scorer="bypass", signals={})
        req.model = tier_model
        routed = {"tier": tier, "model": tier_model, **decision.model_dump(exclude={"tier"})}
        headers = decision_headers(decision, tier_model)
        self.forwarded[tier_model] += 1
        if not req.stream:  # one response: a unary call (TierServer.chat_once / completions_once)
            resp = await self.unary[tier, kind].remote(req, None)
            raise_engine_error(resp)
            body = resp.model_dump(mode="json")
            body["tierroute"] = routed
            return JSONResponse(body, headers=headers)
        gen = self.streams[tier, kind].remote(req, None)
        first = await gen.__anext__()
        raise_engine_error(first[0] if isinstance(first, list) and first else first)
        return StreamingResponse(self._sse(first, gen, routed), media_type="text/event-stream", headers=headers)

    @staticmethod
    async def _sse(first: list, gen, routed: dict) -> AsyncIterator[str]:
        """Relay the engine's SSE chunks; the first chunk carries the routing field; end with [DONE]."""
        tagged = False
        batch = first
        while True:
            for chunk in batch:
                if hasattr(chunk, "error"):
                    yield f"data: {json.dumps({'error': chunk.error.model_dump()})}\n\n"
                    continue
                if chunk.strip() == "data: [DONE]":
                    continue
                if not tagged and chunk.startswith("data: {"):
                    obj = json.loads(chunk[len("data: "):])
                    obj["tierroute"] = routed
                    chunk, tagged = f"data: {json.dumps(obj)}\n\n", True
                yield chunk
            try:
                batch = await gen.__anext__()
            except StopAsyncIteration:
                break
        yield "data: [DONE]\n\n"

    # --- endpoints -----------------------------------------------------------
    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Response:
        with self._counted():
            data = await self._json(request)
            if not isinstance(data.get("messages"), list) or not data["messages"]:
                raise APIError(400, "messages: a non-empty list of messages is required", param="messages")
            return await self._forward("chat", data, ChatCompletionRequest)

    @api.post("/v1/completions")
    async def completions(self, request: Request) -> Response:
        with self._counted():
            data = await self._json(request)
            if not isinstance(data.get("prompt"), (str, list)) or not data["prompt"]:
                raise APIError(400, "prompt: a non-empty string is required", param="prompt")
            return await self._forward("completions", data, CompletionRequest)

    @api.post("/v1/route")
    async def route(self, request: Request) -> JSONResponse:
        with self._counted():
            data = await self._json(request)
            try:
                if "messages" in data:
                    text = prompt_text(data["messages"])
                elif isinstance(data.get("prompt"), str) and data["prompt"].strip():
                    text = prompt_text(data["prompt"])
                else:
                    raise APIError(400, "give 'messages' (a list) or 'prompt' (a non-empty string)", param="messages")
            except ValidationError as e:
                raise validation_error(e) from None
            except (ValueError, TypeError) as e:
                raise APIError(400, str(e), param="messages") from None
            d = await self.decide(text)
            return JSONResponse({"model": self.tiers[d.tier][0], **d.model_dump()}, headers=decision_headers(d, self.tiers[d.tier][0]))

    @api.get("/v1/models")
    async def models(self) -> dict:
        now = int(time.time())
        ids = [self.cfg.ingress.router_name] + [mid for mid, _ in self.tiers.values()]
        return {"object": "list", "data": [{"id": i, "object": "model", "created": now, "owned_by": "tierroute"} for i in ids]}

    @api.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self) -> JSONResponse:
        status = {}
        for tier, (mid, h) in self.tiers.items():
            try:
                await asyncio.wait_for(h.check_health.remote(), 5.0)
                status[mid] = "ready"
            except Exception as e:
                status[mid] = f"not ready: {type(e).__name__}"
        ok = all(v == "ready" for v in status.values())
        return JSONResponse({"status": "ready" if ok else "not ready", "tiers": status}, status_code=200 if ok else 503)
