"""Calls to the tier engines (Ray Serve LLM deployments running :class:`app.serve.llm.TierServer`).

A non-streaming request is one unary call (``chat_once``/``completions_once``);
a streaming one opens the engine's stream. Either way the client's request
headers go along as Ray Serve LLM's ``RawRequestInfo``, as Ray's own OpenAI
ingress passes them. An engine's ``ErrorResponse`` becomes an error in OpenAI's
shape with the engine's status; a tier's 429 (with its ``retry_after``), 503 and 504 are its refusals
(overloaded, unavailable, timeout), other 5xx its errors. A tier is a vLLM engine or a remote endpoint
(:class:`app.serve.remote.RemoteTier`): both answer these calls with the same items.

A tier that fails a request (a server error, no answer within the call's timeout, a full queue,
no healthy replica) raises :class:`app.serve.fallback.TierFailure`: the ingress decides what
happens next. A call that times out or whose request is cancelled is cancelled on the tier too
(Serve cancels the replica's coroutine; vLLM aborts the engine request and frees its slot).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from fastapi import Request
from ray.exceptions import RayActorError
from ray.serve.llm.openai_api_models import ChatCompletionRequest
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from vllm.entrypoints.serve.engine.protocol import ErrorResponse  # the engine's; Ray Serve LLM's subclasses it

from app.serve.calls import within
from app.serve.fallback import TierFailure
from app.serve.errors import engine_error, request_id
from app.serve.ray_llm import RawRequestInfo
from app.serve.tier_config import default_tier_name

logger = logging.getLogger("tierroute.tiers")

ENDPOINTS = ("chat", "completions")  # the OpenAI endpoints a tier serves
REFUSALS = {429: "overloaded", 503: "unavailable", 504: "timeout"}  # a tier's error statuses that are not errors of the request


class Tiers:
    def __init__(self, tiers: dict[int, tuple[str, object]], remote: frozenset[int] = frozenset(), names: dict[int, str] | None = None):
        """``tiers``: tier (1 = the cheapest) -> (model id, deployment handle); ``remote``: the tiers that are remote
        endpoints (their health is a probe of the endpoint, not the replica's own check); ``names``: the tiers' names
        (default ``tier<k>``)."""
        self.remote = frozenset(remote)
        self.model = {t: mid for t, (mid, _) in tiers.items()}
        self.by_model = {mid: t for t, mid in self.model.items()}
        self.name = {t: (names or {}).get(t, default_tier_name(t)) for t in self.model}
        self.by_name = {n: t for t, n in self.name.items()}
        self._handles = {t: h for t, (_, h) in tiers.items()}
        # Method handles made once: building one per request costs measurable CPU.
        self._unary = {(t, e): getattr(h, f"{e}_once") for t, h in self._handles.items() for e in ENDPOINTS}
        self._streams = {(t, e): getattr(h.options(stream=True), e) for t, h in self._handles.items() for e in ENDPOINTS}
        self.forwarded: Counter[str] = Counter()  # requests sent to each tier model

    @staticmethod
    def _raise_on_error(tier: int, resp, request: Request) -> None:
        # Ray Serve LLM's ErrorResponse or vLLM's own (an engine-side validation error, e.g. the context length)
        if isinstance(resp, ErrorResponse):
            e = resp.error
            code = int(e.code)
            if code in REFUSALS:  # overloaded (a remote's 429, with its Retry-After), unavailable, timed out
                logger.warning("request %s: tier %s refused (%s): %s", request_id(request), tier, code, e.message)
                raise TierFailure(tier, REFUSALS[code], getattr(e, "retry_after", None))
            err = engine_error(code, e.message, e.type, getattr(e, "param", None), request_id(request))
            if err.status >= 500:  # the tier's fault: another tier may serve it
                raise TierFailure(tier, "error")
            raise err

    async def _first(self, tier: int, call, request: Request, timeout_s: float, cancel=None):
        """``call``'s first answer within ``timeout_s``; failures as TierFailure. A call given up on (its
        timeout, the request's deadline, the client gone) is cancelled on the tier (:func:`within`)."""
        try:
            return await within(call, timeout_s, cancel)
        except asyncio.TimeoutError:
            raise TierFailure(tier, "timeout") from None
        except BackPressureError:
            raise TierFailure(tier, "overloaded") from None
        except (DeploymentUnavailableError, RayActorError):
            logger.warning("request %s: tier %s unavailable", request_id(request), tier, exc_info=True)
            raise TierFailure(tier, "unavailable") from None
        except Exception:
            logger.exception("request %s: tier %s failed", request_id(request), tier)
            raise TierFailure(tier, "error") from None

    async def complete(self, tier: int, endpoint: str, req, request: Request, timeout_s: float):
        """The engine's one response to a non-streaming request."""
        self.forwarded[self.model[tier]] += 1
        call = self._unary[tier, endpoint].remote(req, RawRequestInfo.from_starlette_request(request))
        resp = await self._first(tier, call, request, timeout_s)
        self._raise_on_error(tier, resp, request)
        return resp

    async def stream(self, tier: int, endpoint: str, req, request: Request, timeout_s: float):
        """(first batch of SSE chunks, the rest) of a streaming request; a failure before the first chunk raises."""
        self.forwarded[self.model[tier]] += 1
        gen = self._streams[tier, endpoint].remote(req, RawRequestInfo.from_starlette_request(request))
        try:
            first = await self._first(tier, gen.__anext__(), request, timeout_s, gen.cancel)
        except StopAsyncIteration:
            raise TierFailure(tier, "error") from None
        self._raise_on_error(tier, first[0] if isinstance(first, list) and first else first, request)
        return first if isinstance(first, list) else [first], gen

    async def ask(self, tier: int, messages: list[dict], max_tokens: int, extra: dict) -> tuple[str, dict]:
        """An internal chat request to ``tier`` (shadow evaluation), not a client's: (answer text, usage).

        No client headers go along and it is not counted as forwarded; any failure raises. Unbounded here:
        the caller bounds it, and cancelling the awaiting task cancels the call on the tier.
        """
        req = ChatCompletionRequest(model=self.model[tier], messages=messages, max_tokens=max_tokens, **extra)
        resp = await within(self._unary[tier, "chat"].remote(req, None), None)
        if isinstance(resp, ErrorResponse):
            raise RuntimeError(f"tier {tier} answered an error")
        return resp.choices[0].message.content or "", resp.usage.model_dump() if resp.usage else {}

    async def health(self, timeout_s: float = 5.0) -> dict[str, str]:
        """Tier model -> "ready" or "not ready" (the cause is logged, not returned)."""
        status = {}
        for tier, h in self._handles.items():
            try:
                await asyncio.wait_for((h.probe if tier in self.remote else h.check_health).remote(), timeout_s)
                status[self.model[tier]] = "ready"
            except Exception:
                logger.warning("tier %s (%s) failed its health check", tier, self.model[tier], exc_info=True)
                status[self.model[tier]] = "not ready"
        return status
