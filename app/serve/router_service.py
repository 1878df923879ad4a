"""The router service of the ingress: text -> embed -> score -> (router LLM inside the band) -> Decision.

With a ladder artifact (``routing.ladder``: three or more tiers, :mod:`app.routing.ladder`) the same text is
embedded and each boundary's P(tier k is not enough) decides: the lowest tier judged sufficient serves it.

One object (:class:`RouterService`) owns the steps a request goes through; the ingress only asks it
to route a text (:meth:`RouterService.route`; the decision itself is made by
:meth:`app.routing.router.Router.decide`). The embedder is either in this process (``embedder.colocate``)
or the Embedder deployment; either way it must be the model the artifact was calibrated
with (checked where the model is loaded, and by :func:`app.serve.graph.build_app`
before anything is deployed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import numpy as np
from ray import serve
from ray.serve.llm.openai_api_models import ChatCompletionRequest
from vllm.entrypoints.serve.engine.protocol import ErrorResponse  # the engine's; Ray Serve LLM's subclasses it

from app.routing.artifact import load_artifact
from app.routing.controller import LadderShareController, ShareController
from app.routing.ladder import LadderRouter
from app.routing.router import Decision, EmbeddingScores, Router
from app.routing.scorers import rating_of_choice, rating_request
from app.serve.calls import within
from app.serve.config import AppConfig
from app.verification.check import check_request, p_no_of_choice

logger = logging.getLogger("tierroute.routing")

Embed = Callable[[list[str]], Awaitable[np.ndarray]]
Rate = Callable[[str], Awaitable[float]]


class RouterLLMRater:
    """The router LLM's rating of a prompt in [0, 1]: constrained to 0-10, the expected value over its logprobs;
    and its check of tier 1's answer (:meth:`check`, the cascade's verifier: P(not correct and complete))."""

    def __init__(self, chat_once, model_id: str):
        self._chat_once = chat_once  # TierServer.chat_once of the router LLM deployment
        self.model_id = model_id

    async def __call__(self, text: str) -> float:
        req = ChatCompletionRequest(**rating_request(self.model_id, text))
        # An internal request: the client's headers (raw_request_info) belong to the tier call, not this one.
        # bounded by RouterService.route: a rating given up on is cancelled, not left queued
        resp = await within(self._chat_once.remote(req, None), None)
        if isinstance(resp, ErrorResponse):
            raise RuntimeError(resp.error.message)
        return rating_of_choice(resp.choices[0].model_dump())  # the parse `calibrate --router-llm` uses

    async def check(self, request: str, answer: str) -> float:
        """P(``answer`` is not a correct and complete answer to ``request``): yes/no constrained, from the logprobs."""
        req = ChatCompletionRequest(**check_request(self.model_id, request, answer))
        resp = await within(self._chat_once.remote(req, None), None)  # bounded by the Judge's timeout
        if isinstance(resp, ErrorResponse):
            raise RuntimeError(resp.error.message)
        return p_no_of_choice(resp.choices[0].model_dump())  # the parse `calibrate --verifier-check-llm` uses


class RouterService:
    """Decisions for prompts: embedding scores (batched under load), the router LLM only inside the band.

    ``embed(texts)`` returns L2-normalised embeddings; ``rate(text)`` the LLM's rating in [0, 1], or is
    None when no router LLM is configured. The threshold of a decision is, in order: the one passed to
    ``route(..., threshold=)``, the share controller's (``controller``, when the config enables one:
    it sees every routed decision's score), the artifact's. The router-LLM band is centred on it.
    """

    LOG_CONTROLLER_EVERY = 1000  # decisions between log lines of the share controller's state

    def __init__(
        self,
        router: Router,
        embed: Embed,
        rate: Rate | None,
        llm_timeout_s: float,
        max_batch_size: int = 32,
        batch_wait_timeout_s: float = 0.0,
        controller: ShareController | None = None,
        degraded_tier: int = 1,
        ladder: LadderRouter | None = None,
        ladder_controller: LadderShareController | None = None,
    ):
        self.router = router
        self.ladder, self.ladder_controller = ladder, ladder_controller
        self.degraded_tier = degraded_tier
        self.controller = controller
        self._embed = embed
        self.rate = rate
        self.llm_timeout_s = llm_timeout_s
        self.scored: Counter[str] = Counter()  # prompts scored alone / in batches
        self._batched.set_max_batch_size(max_batch_size)
        self._batched.set_batch_wait_timeout_s(batch_wait_timeout_s)

    @property
    def embed(self) -> Embed:
        """The embed function (in process or the Embedder deployment); the cascade's verifier embeds with it too."""
        return self._embed

    @property
    def threshold(self) -> float:
        """The threshold the next decision uses: the share controller's when it runs, else the artifact's."""
        return self.controller.threshold if self.controller else self.router.threshold

    def controller_state(self) -> dict | None:
        c = self.ladder_controller or self.controller
        return c.state() if c else None

    async def _scores(self, texts: list[str]) -> EmbeddingScores:
        return self.router.score_embeddings(await self._embed(texts), texts)

    @serve.batch  # sizes set from the config in __init__
    async def _batched(self, texts: list[str]) -> list[EmbeddingScores]:
        """Concurrent prompts, embedded and scored as one batch."""
        self.scored["batched"] += len(texts)
        s = await self._scores(texts)
        return [s.row(i) for i in range(len(texts))]

    async def scores(self, text: str, alone: bool) -> EmbeddingScores:
        """Embedding scores of one prompt; ``alone`` (nothing else in flight) skips the batch queue (~0.7 ms on 2 cores)."""
        if not alone:
            return await self._batched(text)
        self.scored["alone"] += 1
        return await self._scores([text])

    async def route(self, text: str, alone: bool = True, threshold: float | None = None) -> Decision:
        """Score, and consult the router LLM only inside the uncertainty band.

        A rating that is late or fails falls back to the embedding score, and the decision says why.
        An embedder that fails sends the request to ``degraded_tier`` (scorer ``degraded``).
        """
        t0 = time.perf_counter()
        if self.ladder is not None:
            return await self._route_ladder(text, t0)
        if threshold is None:
            threshold = self.threshold
        try:
            s = await self.scores(text, alone)
        except Exception:
            return self._degraded(threshold, t0)
        llm, fallback = None, None
        if self.router.wants_llm(float(s.quantile[0]), threshold):
            if self.rate is None:
                fallback = "router LLM not configured"
            else:
                try:
                    llm = await asyncio.wait_for(self.rate(text), self.llm_timeout_s)
                except asyncio.TimeoutError:
                    fallback = f"router LLM timed out after {self.llm_timeout_s}s"
                except Exception:  # an LLM that is down must not fail the request
                    logger.exception("router LLM failed; the embedding score decides")
                    fallback = "router LLM failed"
        d = self.router.decide(s, llm, fallback, started=t0, threshold=threshold)
        if self.controller is not None:
            self.controller.observe(d.complexity_score)
            if self.controller.decisions % self.LOG_CONTROLLER_EVERY == 0:
                logger.info("share controller: %s", self.controller.state())
        return d

    def _degraded(self, threshold: float, t0: float) -> Decision:
        logger.exception("embedder failed; the request goes to tier %s", self.degraded_tier)
        return Decision(
            tier=self.degraded_tier, complexity_score=0.0, confidence=0.0, threshold=threshold,
            scorer="degraded", signals={}, router_latency_ms=(time.perf_counter() - t0) * 1000,
        )  # fmt: skip

    async def _route_ladder(self, text: str, t0: float) -> Decision:
        """The ladder's decision: per boundary k, P(tier k is not enough) against its threshold (the share
        controller's when it runs); the lowest tier judged sufficient. Signals ``ladder_p<k>``/``ladder_t<k>``."""
        lad, c = self.ladder, self.ladder_controller
        thresholds = c.thresholds if c is not None else lad.thresholds
        try:
            emb = await self._embed(lad.texts(text))
        except Exception:
            return self._degraded(float(thresholds[0]), t0)
        row = lad.scores([text], emb)[0]
        d = lad.decision(row, thresholds)
        if c is not None:
            c.observe(row)
            if c.decisions % self.LOG_CONTROLLER_EVERY == 0:
                logger.info("ladder share controller: %s", c.state())
        signals = {f"ladder_p{k + 1}": p for k, p in enumerate(d.scores)} | {f"ladder_t{k + 1}": t for k, t in enumerate(d.thresholds)}
        b = min(d.tier, len(d.scores)) - 1  # the boundary that decided
        return Decision(
            tier=d.tier, complexity_score=float(np.clip(d.scores[0], 0.0, 1.0)), confidence=min(1.0, abs(d.scores[b] - d.thresholds[b])),
            threshold=d.thresholds[0], scorer="ladder", signals=signals, router_latency_ms=(time.perf_counter() - t0) * 1000,
        )  # fmt: skip


def router_service(cfg: AppConfig, embedder=None, router_llm=None) -> RouterService:
    """The service of ``cfg``: the embedder in this process when ``embedder`` (a handle) is None.

    A co-located model is checked against the artifact here (``Router`` with its embedder), so a
    replica built from a config that bypassed :func:`app.serve.graph.build_app` still fails to start.
    """
    artifact = load_artifact(cfg.artifact)
    if embedder is None:
        from app.routing.embed import Embedder

        model = Embedder(cfg.embedder.embedding_model())
        router = Router(artifact, model)  # raises ArtifactError naming both models if they differ

        async def embed(texts: list[str]) -> np.ndarray:
            # Inline on the event loop: a worker thread would fight the loop for the GIL.
            return model.encode(texts)
    else:
        router = Router(artifact)  # the Embedder deployment checks its model against the artifact
        call, timeout = embedder.embed, cfg.embedder.timeout_s

        async def embed(texts: list[str]) -> np.ndarray:
            return await within(call.remote(texts), timeout)

    llm_cfg = cfg.router_llm
    rate = RouterLLMRater(router_llm.chat_once, llm_cfg.model_id) if router_llm is not None and llm_cfg and llm_cfg.enabled else None
    e = cfg.embedder
    ladder = ladder_controller = controller = None
    if cfg.routing.ladder is not None and cfg.routing.mode == "route":  # a climb's ladder is app.serve.ladder_cascade's
        ladder = LadderRouter.load(cfg.routing.ladder)
        if embedder is None:
            ladder.check_embedder(model.model_id, model.dim)
        if cfg.controller.enabled:
            ladder_controller = LadderShareController(cfg.controller, ladder.thresholds)
    elif cfg.controller.enabled and cfg.routing.mode == "route":
        # in the cascade modes the share controller holds the escalation share instead (app.serve.cascade)
        controller = ShareController(cfg.controller, router.threshold)
    return RouterService(
        router, embed, rate, llm_cfg.timeout_s if llm_cfg else 0.0, e.max_batch_size, e.batch_wait_timeout_s, controller,
        cfg.ingress.degraded_tier, ladder, ladder_controller,
    )  # fmt: skip
