"""A real graph whose two tiers are both remote (no vLLM engine: it starts in seconds), on a stand-in
OpenAI-compatible server on loopback (scripts/stand_in_openai.py), with fallback off and cascade routing on:
what the client gets when no other tier may serve a remote tier's failure (429 with the endpoint's
Retry-After, 503), and the cascade with a remote tier 1 that returns no log-probabilities. The remote tier
beside a local engine: tests/test_serve_remote.py."""

import json
import os

import httpx
import pytest
from common import free_port, local_args
from conftest import openai_error
from stand_in_openai import running

from app.serve.local import local_graph

pytestmark = pytest.mark.serve

KEY = "sk-remote-only-0123456789abcdef"
KEY_ENV = "TIERROUTE_TEST_REMOTE_ONLY_KEY"


def remote_tier(model_id: str, url: str, model: str) -> dict:
    return {
        "model_id": model_id,
        "remote": {"base_url": url, "model": model, "api_key_env": KEY_ENV, "timeout_s": 2, "max_in_flight": 4},
        "replica": {"num_cpus": 0.05, "max_ongoing_requests": 16},
    }


@pytest.fixture(scope="module")
def graph():
    os.environ[KEY_ENV] = KEY
    try:
        with running(free_port(), KEY) as stand_in:
            args = local_args()
            args.pop("router_llm")
            args["routing"]["mode"] = "cascade"
            args["fallback"] = {"down": False, "up": False, "tier_timeout_s": 5}
            args["tier1"] = remote_tier("small-remote", stand_in, "small-model")
            args["tier2"] = remote_tier("large-remote", stand_in, "large-model")
            with local_graph(args, name="tierroute-remote-only") as url, httpx.Client(base_url=url, timeout=60) as client:
                yield client, stand_in
    finally:
        os.environ.pop(KEY_ENV, None)


def chat(content, model="auto", **extra):
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 4, **extra}


def test_a_remote_429_without_fallback_is_the_clients_429_with_its_retry_after(graph):
    client, _ = graph
    r = client.post("/v1/chat/completions", json=chat("Hi [[stand-in: status=429 retry_after=7]]", model="large-remote"))
    err = openai_error(r, 429)
    assert err["code"] == "overloaded" and r.headers["retry-after"] == "7"
    again = client.post("/v1/chat/completions", json=chat("Hi", model="large-remote"))  # refused at once during the pause
    assert openai_error(again, 429)["code"] == "overloaded" and 1 <= int(again.headers["retry-after"]) <= 7


def test_a_remote_server_error_without_fallback_is_503(graph):
    client, _ = graph
    r = client.post("/v1/chat/completions", json=chat("Hi [[stand-in: status=500]]", model="small-remote"))
    err = openai_error(r, 503)
    assert err["type"] == "server_error" and "/srv/secret" not in r.text and int(r.headers["retry-after"]) >= 1


def test_the_cascade_judges_a_remote_tier1_answer_without_logprobs(graph):
    client, _ = graph
    for stream in (False, True):
        body = chat("What is the capital of France?", stream=stream)
        if not stream:
            r = client.post("/v1/chat/completions", json=body)
            assert r.status_code == 200, r.text
            t, headers = r.json()["tierroute"], r.headers
        else:
            with client.stream("POST", "/v1/chat/completions", json=body) as s:
                assert s.status_code == 200
                events = [line for line in s.iter_lines() if line]
                headers = s.headers
            assert events[-1] == "data: [DONE]"
            t = json.loads(events[0][6:])["tierroute"]
        assert t["path"] in ("tier1", "escalated") and t["verifier"] is not None and 0 <= t["verifier"]["score"] <= 1
        assert headers["x-tierroute-path"] == t["path"] and t["model"] == ("small-remote" if t["path"] == "tier1" else "large-remote")
