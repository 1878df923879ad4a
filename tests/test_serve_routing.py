"""The ingress's router service, with a test double for the embedder and the router LLM
(unit tests; batching needs a Serve replica and is tested on the real graph in test_serve_graph.py)."""

import asyncio

import pytest
from conftest import FakeEmbedder

from app.routing.artifact import load_artifact
from app.routing.router import Router
from app.serve.router_service import RouterService

HARD, EASY = "please prove or derive result 3 word", "what is item 7 word word"


@pytest.fixture
def router():
    """The shipped artifact over a stand-in for its embedding model (random unit vectors of its dimension)."""
    art = load_artifact()
    fake = FakeEmbedder()
    fake.model_id, fake.dim = art.embedder.model_id, art.embedder.dim
    art.hybrid.band = 1.0  # every prompt is "unsure": the LLM is always asked
    return Router(art, fake)


def service(router, rate, timeout=0.2):
    async def embed(texts):
        return router.embedder.encode(texts)

    return RouterService(router, embed, rate, timeout, max_batch_size=8, batch_wait_timeout_s=0.01)


def route(router, rate, text=EASY, **kw):
    return asyncio.run(service(router, rate).route(text, **kw))


def test_llm_rating_is_used_inside_the_band(router):
    async def rate(text):
        assert "item 7" in text
        return 1.0

    d = route(router, rate)
    assert d.llm_consulted and d.signals["llm"] == 1.0 and d.llm_fallback is None
    assert d.complexity_score > d.signals["embedding"]


def test_slow_or_failing_llm_falls_back_to_embedding_without_echoing_the_error(router):
    async def slow(text):
        await asyncio.sleep(5)

    async def broken(text):
        raise ConnectionError("replica died at 10.0.0.7")

    for rate, why in ((slow, "timed out after 0.2s"), (broken, "router LLM failed"), (None, "not configured")):
        d = route(router, rate)
        assert not d.llm_consulted and d.signals["llm"] is None and why in d.llm_fallback
        assert "10.0.0.7" not in d.llm_fallback and "ConnectionError" not in d.llm_fallback
        assert d.complexity_score == d.signals["embedding"]


def test_llm_not_asked_outside_the_band(router):
    router.artifact.hybrid.band = 0.0
    calls = []

    async def rate(text):
        calls.append(text)
        return 0.5

    d = route(router, rate, text=HARD)
    assert calls == [] and not d.llm_consulted and d.llm_fallback is None


def test_a_per_decision_threshold_overrides_the_artifacts(router):
    router.artifact.hybrid.band = 0.0
    default = route(router, None, text=HARD)
    assert default.threshold == router.threshold
    for threshold, tier in ((0.0, 2), (default.complexity_score + 1e-6, 1)):
        d = route(router, None, text=HARD, threshold=threshold)
        assert d.tier == tier and d.threshold == threshold and d.complexity_score == default.complexity_score


def test_confidence_is_measured_from_the_threshold_the_decision_used(router):
    """A live threshold (explicit, or a share controller's) other than the artifact's: the reported
    confidence agrees with the tier chosen -- 0 at the live threshold, growing away from it."""
    router.artifact.hybrid.band = 0.0
    score = route(router, None, text=HARD).complexity_score
    at = route(router, None, text=HARD, threshold=score)
    assert at.tier == 2 and at.threshold == score and at.confidence == pytest.approx(0.0, abs=1e-9)
    # between the artifact's threshold and the score: a live threshold just above the score sends it to tier 1,
    # with little confidence (measured from the artifact's threshold it would be confident of tier 2)
    live = score + 1e-3 if score > router.threshold else score - 1e-3
    near = route(router, None, text=HARD, threshold=live)
    assert near.tier == (1 if live > score else 2) and near.confidence < 0.05
    far = route(router, None, text=HARD, threshold=0.0)
    assert far.tier == 2 and far.confidence > near.confidence
    for t in (0.2, 0.5, 0.8):
        d = route(router, None, text=HARD, threshold=t)
        assert d.confidence == pytest.approx(router.confidence(d.complexity_score, t))


def test_share_controller_sets_each_decisions_threshold_and_holds_the_share(router):
    """Live traffic unlike calibration traffic: the controller moves the threshold to hold 30% tier 2."""
    from app.routing.controller import ControllerConfig, ShareController

    router.artifact.hybrid.band = 0.0
    ctrl = ShareController(ControllerConfig(enabled=True, target_tier2_share=0.3, window=200, warmup=50), router.threshold)
    svc = RouterService(router, service(router, None)._embed, None, 0.2, controller=ctrl)
    # lengths varied enough that few prompts tie at any threshold (13 lengths alone left the share
    # jumping between tie groups under the stand-in embedder)
    texts = [f"what is item {i} " + "word " * (i % 37) + "x" * (i % 11) for i in range(600)]

    async def run():
        out = []
        for t in texts:
            used = svc.threshold
            d = await svc.route(t)
            assert d.threshold == used  # each decision reports the threshold it was routed with
            assert d.confidence == pytest.approx(router.confidence(d.complexity_score, used))  # and measures from it
            out.append(d)
        return out

    decisions = asyncio.run(run())
    assert all(d.threshold == router.threshold for d in decisions[:50])  # the artifact's until warm
    late = [d.tier for d in decisions[300:]]
    assert abs(late.count(2) / len(late) - 0.3) <= 0.05
    state = svc.controller_state()
    assert state["warm"] and state["target_tier2_share"] == 0.3 and state["threshold"] == pytest.approx(svc.threshold, abs=1e-6)
    # without a controller the threshold is the artifact's
    plain = service(router, None)
    assert plain.controller_state() is None and asyncio.run(plain.route(texts[0])).threshold == router.threshold


def test_failing_embedder_sends_requests_to_the_degraded_tier(router):
    async def broken(texts):
        raise TimeoutError("embedder at 10.0.0.7 did not answer")

    for tier in (1, 2):
        svc = RouterService(router, broken, None, 0.2, degraded_tier=tier)
        d = asyncio.run(svc.route(HARD))
        assert d.tier == tier and d.scorer == "degraded" and d.signals == {} and d.threshold == router.threshold
