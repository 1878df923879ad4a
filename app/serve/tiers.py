"""Calls to the tier engines (Ray Serve LLM deployments running :class:`app.serve.llm.TierServer`).

A non-streaming request is one unary call (``chat_once``/``completions_once``);
a streaming one opens the engine's stream. Either way the client's request
headers go along as Ray Serve LLM's ``RawRequestInfo``, as Ray's own OpenAI
ingress passes them. An engine's ``ErrorResponse`` becomes an error in OpenAI's
shape with the engine's status.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from fastapi import Request
from ray.llm._internal.serve.core.protocol import RawRequestInfo
from ray.serve.llm.openai_api_models import ErrorResponse

from app.serve.protocol import engine_error, request_id

logger = logging.getLogger("tierroute.tiers")

KINDS = ("chat", "completions")


class Tiers:
    def __init__(self, tiers: dict[int, tuple[str, object]]):
        """``tiers``: tier -> (model id, deployment handle)."""
        self.model = {t: mid for t, (mid, _) in tiers.items()}
        self.by_model = {mid: t for t, mid in self.model.items()}
        self._handles = {t: h for t, (_, h) in tiers.items()}
        # Method handles made once: building one per request costs measurable CPU.
        self._unary = {(t, k): getattr(h, f"{k}_once") for t, h in self._handles.items() for k in KINDS}
        self._streams = {(t, k): getattr(h.options(stream=True), k) for t, h in self._handles.items() for k in KINDS}
        self.forwarded: Counter[str] = Counter()  # requests sent to each tier model

    @staticmethod
    def _raise_on_error(resp, request: Request) -> None:
        if isinstance(resp, ErrorResponse):
            e = resp.error
            raise engine_error(int(e.code), e.message, e.type, getattr(e, "param", None), request_id(request))

    async def complete(self, tier: int, kind: str, req, request: Request):
        """The engine's one response to a non-streaming request."""
        self.forwarded[self.model[tier]] += 1
        resp = await self._unary[tier, kind].remote(req, RawRequestInfo.from_starlette_request(request))
        self._raise_on_error(resp, request)
        return resp

    async def stream(self, tier: int, kind: str, req, request: Request):
        """(first batch of SSE chunks, the rest) of a streaming request; an error before the first chunk raises."""
        self.forwarded[self.model[tier]] += 1
        gen = self._streams[tier, kind].remote(req, RawRequestInfo.from_starlette_request(request))
        first = await gen.__anext__()
        self._raise_on_error(first[0] if isinstance(first, list) and first else first, request)
        return first if isinstance(first, list) else [first], gen

    async def health(self, timeout_s: float = 5.0) -> dict[str, str]:
        """Tier model -> "ready" or "not ready" (the cause is logged, not returned)."""
        status = {}
        for tier, h in self._handles.items():
            try:
                await asyncio.wait_for(h.check_health.remote(), timeout_s)
                status[self.model[tier]] = "ready"
            except Exception:
                logger.warning("tier %s (%s) failed its health check", tier, self.model[tier], exc_info=True)
                status[self.model[tier]] = "not ready"
        return status
