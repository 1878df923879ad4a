"""Serving a ladder without Ray (unit tests with test doubles for the embedder and the tier calls): the router
service's ladder decision and the ingress's walk down (and up) the ladder when tiers fail. The real three-tier
graph: tests/test_serve_ladder.py."""

import asyncio
import json
import zlib

import numpy as np
import pytest
import yaml
from conftest import ROOT, FakeEmbedder

from app.routing.artifact import load_artifact
from app.routing.controller import ControllerConfig, LadderShareController
from app.routing.ladder import LadderRouter
from app.routing.router import Decision, Router
from app.serve.config import AppConfig
from app.serve.errors import APIError
from app.serve.fallback import Fallback, TierFailure
from app.serve.responses import Served, decision_headers, routed_field
from app.serve.router_service import RouterService
from app.serve.tiers import Tiers

def embedder() -> FakeEmbedder:
    """Random unit vectors of the shipped ladder's dimension, stable per text."""
    fake = FakeEmbedder()
    fake.dim = LadderRouter.load().embedder.dim
    return fake


PROMPTS = ["What is 2 + 2?", "Prove that there are infinitely many primes.", "def f(x): return x[::-1]\nassert f('abc') == ??", "Hi"]


def ladder_service(embed, controller=None) -> RouterService:
    art = load_artifact()
    fake = FakeEmbedder()
    fake.model_id, fake.dim = art.embedder.model_id, art.embedder.dim
    return RouterService(Router(art, fake), embed, None, 0.2, ladder=LadderRouter.load(), ladder_controller=controller)


def test_the_ladder_decides_each_prompt_as_its_router_does_and_says_how():
    emb = embedder()
    seen = []

    async def embed(texts):
        seen.extend(texts)
        return emb.encode(texts)

    svc, lad = ladder_service(embed), LadderRouter.load()
    for text in PROMPTS:
        d = asyncio.run(svc.route(text))
        row = lad.scores([text], emb.encode([text]))[0]
        assert d.tier == lad.decide(row) and d.scorer == "ladder"
        assert d.signals["ladder_p1"] == pytest.approx(row[0]) and d.signals["ladder_p2"] == pytest.approx(row[1])
        assert d.signals["ladder_t1"] == pytest.approx(lad.thresholds[0]) and d.complexity_score == pytest.approx(row[0])
    assert seen == PROMPTS  # the routed text, embedded once per request


def test_a_failing_embedder_sends_ladder_requests_to_the_degraded_tier():
    async def broken(texts):
        raise RuntimeError("/secret/path exploded")

    svc = ladder_service(broken)
    svc.degraded_tier = 2
    d = asyncio.run(svc.route("anything"))
    assert d.tier == 2 and d.scorer == "degraded"


def test_the_ladders_share_controller_moves_the_thresholds_each_decision_uses():
    lad = LadderRouter.load()
    b = lad.artifact.boundaries[0]
    n = len(b.features)
    mean, scale = np.array(b.model.mean[n:]), np.array(b.model.scale[n:])  # embeddings like the calibration prompts'

    async def embed(texts):
        rng = np.random.default_rng(zlib.crc32(texts[0].encode()))
        return (mean + scale * rng.normal(0, 1, len(mean)))[None, :]

    ctrl = LadderShareController(ControllerConfig(enabled=True, target_shares=[0.2, 0.3, 0.5], window=200, warmup=50, smoothing=0.2), lad.thresholds)
    rng = np.random.default_rng(0)
    texts = [f"question {rng.integers(1e6)} " * int(rng.integers(1, 30)) for _ in range(600)]

    def shares(svc):
        tiers = [asyncio.run(svc.route(t)).tier for t in texts]
        return np.bincount(tiers[300:], minlength=4)[1:] / 300

    held, free = shares(ladder_service(embed, ctrl)), shares(ladder_service(embed))
    assert ctrl.decisions == 600 and ctrl.state()["target_shares"] == [0.2, 0.3, 0.5]
    target = np.array([0.2, 0.3, 0.5])
    assert np.abs(held - target).max() < 0.1 < np.abs(free - target).max()  # held near the targets; the artifact's thresholds are not


# --- the ingress's fallback walk ------------------------------------------------------------------


class Handle:
    """A deployment handle's shape: what Tiers reads at construction (never called here)."""

    def __getattr__(self, name):
        return self

    def options(self, **kw):
        return self


def host_of(args: dict):
    """An object with the Ingress's methods over ``args`` (no replica: its tiers and tier calls are set by the test)."""
    from types import SimpleNamespace

    from app.serve.ingress import Ingress

    cls, host = Ingress.func_or_class, SimpleNamespace(cfg=AppConfig.model_validate(args))
    for name in ("_call_or_fall_back", "_tier_down", "_respond", "_stream_response", "_record"):
        setattr(host, name, getattr(cls, name).__get__(host))
    return host


def ingress(failing: dict[int, str], **fallback):
    args = yaml.safe_load((ROOT / "configs/local-ladder.yaml").read_text())["applications"][0]["args"]
    args["fallback"] = {"tier_timeout_s": 5, **fallback}
    ing = host_of(args)
    ing.tiers = Tiers({r.index: (r.spec.model_id, Handle()) for r in ing.cfg.ladder}, names={r.index: r.name for r in ing.cfg.ladder})
    tried = []

    async def call(served, parsed, request, timeout=None):
        tried.append(served.tier)
        if served.tier in failing:
            raise TierFailure(served.tier, failing[served.tier])
        return f"answer of tier {served.tier}", 1.0

    ing._call = call
    return ing, tried


def decided(ing, tier: int) -> Served:
    d = Decision(tier=tier, complexity_score=0.9, confidence=0.5, threshold=0.4, scorer="ladder", signals={})
    return Served.as_decided(d, ing.tiers.model[tier], None, ing.tiers.name)


def walk(ing, served):
    return asyncio.run(ing._call_or_fall_back(served, None, None, "r1"))


def test_a_failed_tier_falls_down_the_ladder_nearest_first():
    ing, tried = ingress({3: "timeout", 2: "error"})
    s = decided(ing, 3)
    out, _ = walk(ing, s)
    assert out == "answer of tier 1" and tried == [3, 2, 1]
    assert s.tier == 1 and s.model == "tier1-small" and s.reason == "fallback" and s.fallback == Fallback(3, 1, "timeout")
    h = decision_headers(s)
    assert h["x-tierroute-tier"] == '1;name="small"' and h["x-tierroute-fallback"] == "tier3->tier1; cause=timeout"
    assert routed_field(s)["tier_name"] == "small" and routed_field(s)["decided_tier"] == 3


def test_up_is_tried_after_down_and_only_where_configured():
    ing, tried = ingress({2: "unavailable", 1: "error"}, up=True)
    s = decided(ing, 2)
    assert walk(ing, s)[0] == "answer of tier 3" and tried == [2, 1, 3] and s.name == "large"
    ing, tried = ingress({1: "overloaded"})  # up off (the default): nothing above is tried
    with pytest.raises(APIError) as e:
        walk(ing, decided(ing, 1))
    assert tried == [1] and e.value.status == 429  # the last failure was an overload: 429 with Retry-After
    ing, tried = ingress({1: "error", 2: "error", 3: "timeout"}, up=True)
    with pytest.raises(APIError) as e:
        walk(ing, decided(ing, 1))
    assert tried == [1, 2, 3] and e.value.status == 503


# --- the climb (routing.mode cascade over a ladder) --------------------------------------------------


class Reply:
    """An engine's unary response: what Tiers.complete returns."""

    def __init__(self, tier: int, text: str, finish: str = "stop"):
        self.body = {
            "id": f"r{tier}", "object": "chat.completion", "created": 0, "model": f"m{tier}",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 10 * tier, "total_tokens": 5 + 10 * tier},
        }  # fmt: skip

    def model_dump(self, mode="json"):
        return json.loads(json.dumps(self.body))


def climb(scores: dict[int, float], failing: dict[int, str] | None = None, finish: dict[int, str] | None = None, stream=False, cap=None):
    """Serve one chat request through a LadderCascade over local-ladder.yaml's three tiers whose calls are test
    doubles; boundary k's score is ``scores[k]`` (the shipped climb's thresholds: 0.436, 0.276). Returns the
    response, the tiers called and the request's key quota."""
    from app.serve.auth import KeyQuota
    from app.serve.config import KeyLimits, MetricsConfig
    from app.serve.ingress import Admitted
    from app.serve.ladder_cascade import LadderCascade
    from app.serve.prometheus import Metrics
    from app.serve.requests import parse_chat
    from app.verification.ladder import LadderJudge

    failing, finish = failing or {}, finish or {}
    args = yaml.safe_load((ROOT / "configs/local-ladder.yaml").read_text())["applications"][0]["args"]
    args["routing"] = {"mode": "cascade", "ladder": "app/verification/artifacts/ladder.json", "cascade": {"max_tier1_tokens": 64}}
    args["controller"]["enabled"] = False
    host = host_of(args)
    host.tiers = Tiers({r.index: (r.spec.model_id, Handle()) for r in host.cfg.ladder}, names={r.index: r.name for r in host.cfg.ladder})
    host.metrics = Metrics(MetricsConfig(enabled=False), {r.index: r.price for r in host.cfg.ladder})
    host.shadow, host.active = None, 1
    host.quotas = {"team": KeyQuota(KeyLimits(max_tier_shares=cap), tier_index=host.tiers.by_name)} if cap else {}
    called = []

    async def complete(tier, endpoint, req, request, timeout_s):
        called.append(tier)
        assert req.model == host.tiers.model[tier] and req.max_completion_tokens == 64 and not req.stream
        if tier in failing:
            raise TierFailure(tier, failing[tier])
        return Reply(tier, f"answer of tier {tier}", finish.get(tier, "stop"))

    async def call(served, parsed, request, timeout=None):
        called.append(served.tier)
        if served.tier in failing:
            raise TierFailure(served.tier, failing[served.tier])
        return Reply(served.tier, f"answer of tier {served.tier}"), 1.0

    host.tiers.complete, host._call = complete, call
    judge = LadderJudge.load()
    judge.score = lambda k, request, answer: scores[k]  # the boundaries' scores, set by the test
    casc = LadderCascade(host, host.cfg, judge)
    parsed = parse_chat({"model": "auto", "messages": [{"role": "user", "content": "What is 6 x 7?"}], "stream": stream}, host.cfg.ingress, host.tiers.by_model)
    d = Decision(tier=1, complexity_score=0.0, confidence=0.0, threshold=1.0, scorer="cascade", signals={})
    served = Served.as_decided(d, host.tiers.model[1], "team" if cap else None, host.tiers.name)
    served.path = "cascade"
    key = type("K", (), {"name": "team"})() if cap else None
    resp = asyncio.run(casc.serve(parsed, served, None, Admitted("r1", key, 30.0, __import__("time").monotonic())))
    return resp, called, host.quotas.get("team")


def body(resp) -> dict:
    return json.loads(resp.body)


def test_the_climb_stops_at_the_first_tier_judged_sufficient_and_charges_the_tiers_passed():
    resp, called, _ = climb({1: 0.9, 2: 0.1})
    b = body(resp)
    assert called == [1, 2] and b["choices"][0]["message"]["content"] == "answer of tier 2"
    t = b["tierroute"]
    assert t["tier"] == 2 and t["tier_name"] == "medium" and t["path"] == "escalated" and t["escalation"] == "verifier"
    assert t["spent_tokens"] == {"small": 10} and t["verifier"]["kind"] == "medium" and t["verifier"]["score"] == 0.1
    assert resp.headers["x-tierroute-tier"] == '2;name="medium"'
    resp, called, _ = climb({1: 0.1, 2: 0.9})  # tier 1 sufficient: nothing else is asked
    assert called == [1] and body(resp)["tierroute"]["path"] == "tier1" and body(resp)["tierroute"]["spent_tokens"] == {}
    resp, called, _ = climb({1: 0.9, 2: 0.9})  # nobody below is enough: the top tier answers the request as asked
    t = body(resp)["tierroute"]
    assert called == [1, 2, 3] and t["tier"] == 3 and t["spent_tokens"] == {"small": 10, "medium": 20}


def test_an_answer_cut_at_the_cap_climbs_and_a_failed_rung_is_passed_over():
    resp, called, _ = climb({1: 0.0, 2: 0.0}, finish={1: "length"})
    t = body(resp)["tierroute"]
    assert called == [1, 2] and t["tier"] == 2 and t["escalation"] == "length"
    resp, called, _ = climb({1: 0.9, 2: 0.0}, failing={2: "timeout"})
    t = body(resp)["tierroute"]
    assert called == [1, 2, 3] and t["tier"] == 3 and t["reason"] == "fallback" and t["fallback"]["cause"] == "timeout"


def test_a_failed_top_tier_leaves_the_last_answer_and_none_at_all_is_a_503():
    resp, called, _ = climb({1: 0.9, 2: 0.9}, failing={3: "error"})
    t = body(resp)["tierroute"]
    assert called == [1, 2, 3] and t["tier"] == 2 and t["reason"] == "fallback" and t["fallback"] == {"from_tier": 3, "to_tier": 2, "cause": "error"}
    assert t["spent_tokens"] == {"small": 10}
    with pytest.raises(APIError) as e:
        climb({1: 0.9, 2: 0.9}, failing={1: "error", 2: "error", 3: "unavailable"})
    assert e.value.status == 503


def test_a_keys_cap_stops_the_climb_below_the_capped_tier():
    resp, called, quota = climb({1: 0.9, 2: 0.9}, cap={"medium": 0.0})
    t = body(resp)["tierroute"]
    assert called == [1] and t["tier"] == 1 and t["reason"] == "over-cap" and quota.share_from(2) == 0.0


def test_a_streaming_request_gets_the_accepted_answer_as_sse():
    resp, called, _ = climb({1: 0.9, 2: 0.1}, stream=True)

    async def read():
        return [c async for c in resp.body_iterator]

    chunks = asyncio.run(read())
    first = json.loads(chunks[0][len("data: "):])
    assert called == [1, 2] and first["tierroute"]["tier"] == 2 and first["choices"][0]["delta"]["content"] == "answer of tier 2"
    assert chunks[-1] == "data: [DONE]\n\n"
