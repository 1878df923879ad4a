"""Operations pieces of the ingress without a cluster: input limits, API keys and per-key limits,
fallback directions, decision log lines, and the Grafana dashboard against the exported metrics."""

import json
import logging
import re

import pytest
from conftest import ROOT, openai_error
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from app.routing.router import Decision
from app.serve import errors, requests
from app.serve import responses as r
from app.serve.auth import Key, KeyQuota, KeyRing, load_keys
from app.serve.config import AuthConfig, FallbackConfig, IngressConfig, KeyLimits
from app.serve.decision_log import decision_line, log_decision
from app.serve.fallback import fallback_order, Fallback, other_tier
from app.serve.config import MetricsConfig
from app.serve.prometheus import METRICS, Metrics

USER = [{"role": "user", "content": "Solve x^2 = 4."}]
SECRET_A, SECRET_B = "sk-team-a-0123456789abcdef", "sk-team-b-fedcba9876543210"


@pytest.fixture(scope="module")
def client():
    app = FastAPI()
    errors.install_error_handlers(app)
    ingress = IngressConfig(max_body_bytes=1 << 20, max_json_depth=32, max_messages=4)

    @app.post("/chat")
    async def chat(request: Request):
        requests.parse_chat(await requests.read_json(request, ingress.max_body_bytes, ingress.max_json_depth), ingress, {})
        return {"ok": True}

    return TestClient(app, raise_server_exceptions=False)


def test_deep_nesting_is_a_400_not_a_500(client):
    deep = '{"model": "auto", "messages": ' + "[" * 5000 + "]" * 5000 + "}"
    err = openai_error(client.post("/chat", content=deep), 400)
    assert "32 levels" in err["message"] and "Recursion" not in err["message"]
    # brackets inside strings are text, not nesting
    text = "[{" * 100
    ok = client.post("/chat", json={"model": "auto", "messages": [{"role": "user", "content": text + '\\"]'}]})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(
    "extra,param",
    [
        ({"stream": "yes"}, "stream"),
        ({"stream": 1}, "stream"),
        ({"temperature": -1}, "temperature"),
        ({"temperature": "0.5"}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 0}, "n"),
        ({"n": 1000}, "n"),
        ({"max_tokens": -5}, "max_tokens"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"top_logprobs": 50}, "top_logprobs"),
        ({"logprobs": "yes"}, "logprobs"),
    ],
)
def test_sampling_parameters_are_strict_and_in_range(client, extra, param):
    err = openai_error(client.post("/chat", json={"model": "auto", "messages": USER, **extra}), 400)
    assert err["param"] == param and err["message"].startswith(param)


def test_valid_unusual_requests_pass(client):
    for extra in ({"stream": True, "stream_options": {"include_usage": True}}, {"n": 2, "temperature": 0, "top_p": 1}, {"logprobs": True, "top_logprobs": 3}, {"seed": 7}):
        r = client.post("/chat", json={"model": "auto", "messages": USER, **extra})
        assert r.status_code == 200, (extra, r.text)
    err = openai_error(client.post("/chat", json={"model": "auto", "messages": USER * 5}), 400)
    assert err["param"] == "messages" and "at most 4" in err["message"]


def test_completions_logprobs_are_an_integer():
    requests.check_sampling({"logprobs": 2, "echo": False}, "completions")
    with pytest.raises(errors.APIError) as e:
        requests.check_sampling({"logprobs": True}, "completions")
    assert e.value.param == "logprobs"


def test_timeout_header_may_lower_the_deadline_only():
    assert requests.timeout_of(None, 30) == 30 and requests.timeout_of("2.5", 30) == 2.5 and requests.timeout_of("100", 30) == 30
    for bad in ("0", "-1", "soon", "nan", "inf"):
        with pytest.raises(errors.APIError) as e:
            requests.timeout_of(bad, 30)
        assert e.value.status == 400 and e.value.param == "x-tierroute-timeout"


def test_retry_after_goes_into_the_header():
    r = errors.overloaded("busy", 3).response()
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert json.loads(r.body)["error"]["code"] == "overloaded"
    assert errors.unavailable("down", 2).response().status_code == 503


def test_ingress_limit_must_come_before_serves_own_queue():
    with pytest.raises(ValueError, match="max_concurrent_requests"):
        IngressConfig(max_concurrent_requests=300)


# --- API keys -------------------------------------------------------------------------------


def test_keys_from_env_in_both_formats_and_from_a_file(tmp_path):
    spec = AuthConfig(keys_env="TR_KEYS", default_limits=KeyLimits(requests_per_minute=60))
    keys = load_keys(spec, {"TR_KEYS": f"team-a:{SECRET_A}, team-b:{SECRET_B}"})
    assert [k.name for k in keys] == ["team-a", "team-b"] and all(k.limits.requests_per_minute == 60 for k in keys)
    env = json.dumps([{"name": "team-a", "key": SECRET_A, "max_tier2_share": 0.2}])
    (k,) = load_keys(spec, {"TR_KEYS": env})
    assert k.limits.max_tier2_share == 0.2 and k.limits.requests_per_minute == 60  # own limit + the default
    f = tmp_path / "keys.json"
    f.write_text(json.dumps([{"name": "svc", "key": SECRET_B, "requests_per_minute": 5}]))
    (k,) = load_keys(AuthConfig(keys_file=str(f)), {})
    assert k.name == "svc" and k.limits.requests_per_minute == 5
    # what replicas receive: the digest, never the key
    assert SECRET_B not in json.dumps(k.dump()) and Key.load(k.dump()) == k
    assert load_keys(AuthConfig(), {}) == []


@pytest.mark.parametrize(
    "env,match",
    [
        (None, "not set"),
        ("team-a", "not 'name:key'"),
        ("team-a:short", "at least 16"),
        (f"a:{SECRET_A},a:{SECRET_B}", "unique"),
        (f"a:{SECRET_A},b:{SECRET_A}", "twice"),
        ('[{"name": "a"}]', "key"),
    ],
)
def test_bad_key_sources_fail_naming_the_field_never_the_key(env, match):
    with pytest.raises(ValueError, match=match) as e:
        load_keys(AuthConfig(keys_env="TR_KEYS"), {} if env is None else {"TR_KEYS": env})
    assert "auth" in str(e.value) and SECRET_A not in str(e.value) and "short" not in str(e.value).split(":")[-1]


def test_authenticate():
    ring = KeyRing(load_keys(AuthConfig(keys_env="K"), {"K": f"team-a:{SECRET_A},team-b:{SECRET_B}"}))
    assert ring.authenticate(f"Bearer {SECRET_B}").name == "team-b"
    assert ring.authenticate(f"bearer {SECRET_A}").name == "team-a"
    for header in (None, "", SECRET_A, "Bearer ", f"Basic {SECRET_A}", f"Bearer {SECRET_A}x", f"Bearer {SECRET_A[:-1]}"):
        with pytest.raises(errors.APIError) as e:
            ring.authenticate(header)
        assert e.value.status == 401 and e.value.code == "invalid_api_key" and SECRET_A not in e.value.message


def test_requests_per_minute_with_retry_after():
    now = [0.0]
    q = KeyQuota(KeyLimits(requests_per_minute=3), clock=lambda: now[0])
    for t in (0, 10, 20):
        now[0] = t
        q.admit()
    now[0] = 30
    with pytest.raises(errors.APIError) as e:
        q.admit()
    assert e.value.status == 429 and e.value.code == "rate_limit_exceeded" and e.value.retry_after == 30
    now[0] = 60.5  # the first request left the window
    q.admit()


def test_tier2_cap_holds_a_key_that_only_sends_hard_prompts():
    q = KeyQuota(KeyLimits(max_tier2_share=0.25, tier2_window=100))
    got = [q.cap(2) for _ in range(400)]
    share = sum(t == 2 for t, _ in got[100:]) / 300
    assert abs(share - 0.25) <= 0.02 and got[0] == (2, False) and any(c for _, c in got)
    assert all(t == 1 for t, c in got if c)
    free = KeyQuota(KeyLimits())
    assert all(free.cap(2) == (2, False) for _ in range(50))
    none = KeyQuota(KeyLimits(max_tier2_share=0.0))
    assert none.cap(2) == (1, True) and none.cap(1) == (1, False)


def test_a_ladders_caps_move_a_key_below_the_lowest_tier_past_its_cap():
    names = {"small": 1, "mid": 2, "big": 3}
    q = KeyQuota(KeyLimits(max_tier_shares={"big": 0.2}, tier2_window=100), tier_index=names)
    got = [q.cap(3) for _ in range(400)]
    assert abs(sum(t == 3 for t, _ in got[100:]) / 300 - 0.2) <= 0.02
    assert {t for t, c in got if c} == {2}  # past the cap on big: the tier below it, not the cheapest
    both = KeyQuota(KeyLimits(max_tier2_share=0.5, max_tier_shares={"big": 0.1}), tier_index=names)
    got = [both.cap(3) for _ in range(300)]
    tiers = [t for t, _ in got[100:]]
    assert abs(tiers.count(3) / 200 - 0.1) <= 0.03 and abs((tiers.count(2) + tiers.count(3)) / 200 - 0.5) <= 0.03
    assert {t for t, c in got if c} == {1, 2}
    assert KeyQuota(KeyLimits(max_tier_shares={"mid": 0.0}), tier_index=names).cap(3) == (1, True)  # at or above mid: capped at 0
    for bad, match in (({"huge": 0.1}, "no tier is named 'huge'"), ({"small": 0.1}, "cheapest tier cannot be capped")):
        with pytest.raises(ValueError, match=match):
            KeyQuota(KeyLimits(max_tier_shares=bad), tier_index=names)


# --- fallback and decision lines ------------------------------------------------------------


def test_fallback_directions_are_configured_one_by_one():
    assert other_tier(2, FallbackConfig()) == 1 and other_tier(1, FallbackConfig()) is None
    both = FallbackConfig(up=True)
    assert other_tier(1, both) == 2
    assert other_tier(2, FallbackConfig(down=False)) is None


def test_fallback_walks_the_ladder_down_nearest_first_then_up():
    assert fallback_order(3, 4, FallbackConfig()) == [2, 1]
    assert fallback_order(3, 4, FallbackConfig(up=True)) == [2, 1, 4]
    assert fallback_order(1, 4, FallbackConfig(up=True)) == [2, 3, 4]
    assert fallback_order(2, 3, FallbackConfig(down=False, up=True)) == [3]
    assert fallback_order(4, 4, FallbackConfig(down=False, up=True)) == []


def test_old_fallback_names_load_as_down_and_up_with_a_warning():
    with pytest.warns(DeprecationWarning, match="fallback.tier1_to_tier2"):
        f = FallbackConfig.model_validate({"tier2_to_tier1": False, "tier1_to_tier2": True})
    assert (f.down, f.up) == (False, True)
    with pytest.raises(ValueError, match="set only up"):
        FallbackConfig.model_validate({"tier1_to_tier2": True, "up": False})


def served(**kw):
    d = Decision(tier=2, complexity_score=0.9, confidence=0.8, threshold=0.3, scorer="kinds", kind="chat", signals={"embedding": 0.9}, router_latency_ms=3.2)
    return r.Served(d, 1, "small", "fallback", Fallback(2, 1, "timeout"), key="team-a", **kw)


def test_decision_line_and_headers_say_how_a_request_was_served(caplog):
    s = served()
    line = json.loads(decision_line("r1", s, 12.5, {"prompt_tokens": 7, "completion_tokens": 3}))
    assert line["request_id"] == "r1" and line["key"] == "team-a" and line["tier"] == 1 and line["decided_tier"] == 2
    assert line["reason"] == "fallback" and line["fallback"] == {"from_tier": 2, "to_tier": 1, "cause": "timeout"}
    assert line["prompt_tokens"] == 7 and line["tier_latency_ms"] == 12.5 and "prompt" not in line
    assert json.loads(decision_line("r1", s, None, None, text="hello"))["prompt"] == "hello"
    h = r.decision_headers(s)
    assert h["x-tierroute-tier"] == '1;name="tier1"' and h["x-tierroute-fallback"] == "tier2->tier1; cause=timeout" and h["x-tierroute-reason"] == "fallback"
    f = r.routed_field(s)
    assert f["tier"] == 1 and f["decided_tier"] == 2 and f["fallback"]["cause"] == "timeout"
    with caplog.at_level(logging.INFO, logger="tierroute.decisions"):
        log_decision("r2", s, 1.0, None)
    assert json.loads(caplog.records[-1].getMessage())["request_id"] == "r2"


# --- dashboard ------------------------------------------------------------------------------

SUFFIX = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def test_every_dashboard_query_names_an_exported_metric():
    dash = json.loads((ROOT / "dashboards/tierroute.json").read_text())
    panels = [q for row in dash["panels"] for q in [row, *row.get("panels", [])]]
    exprs = [t["expr"] for panel in panels for t in panel.get("targets", [])]
    assert len(exprs) >= 8
    used = set()
    for expr in exprs:
        names = re.findall(r"\bray_(tierroute_[a-z_]+)", expr)
        assert names, expr
        for full in names:
            base = next((full.removesuffix(s) for m in METRICS.values() for s in SUFFIX[m[0]] if full.endswith(s) and full.removesuffix(s) in METRICS), None)
            assert base is not None, f"{full} is not exported (app/serve/prometheus.py)"
            assert any(full.endswith(s) for s in SUFFIX[METRICS[base][0]]), full
            used.add(base)
    assert used == set(METRICS), f"metrics with no panel: {set(METRICS) - used}"


class Recorder:
    """A metric's test double: what it was given."""

    def __init__(self):
        self.seen = []

    def inc(self, value, tags):
        self.seen.append((value, tags))

    observe = inc


def test_cost_is_priced_per_tier_against_all_on_the_top_tier():
    from app.serve.config import Price

    prices = {1: Price(input_per_mtok=1, output_per_mtok=2), 2: Price(input_per_mtok=5, output_per_mtok=5), 3: Price(input_per_mtok=10, output_per_mtok=30)}
    m = Metrics(MetricsConfig(enabled=False), prices)
    m._m = {name: Recorder() for name in METRICS}
    m.tokens(2, {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000})
    cost = {t["basis"]: v for v, t in m._m["tierroute_cost"].seen}
    assert cost == {"served": pytest.approx(10.0), "all_top": pytest.approx(40.0)}
    assert m._m["tierroute_tier_cost"].seen == [(pytest.approx(10.0), {"tier": "2"})]


def test_only_scored_decisions_feed_the_score_histogram():
    """A bypass that fell back to the other tier was never scored: its 0 must not enter the histogram."""

    m = Metrics(MetricsConfig(enabled=False))
    m._m = {name: Recorder() for name in METRICS}
    m.served(served(), 5.0, None)  # a scored decision that fell back
    bypassed = r.Served(r.bypass(2, 0.3), 1, "small", "fallback", Fallback(2, 1, "error"))
    m.served(bypassed, 5.0, None)
    assert [v for v, _ in m._m["tierroute_complexity_score"].seen] == [0.9]
    assert len(m._m["tierroute_requests"].seen) == 2 and len(m._m["tierroute_fallbacks"].seen) == 2
