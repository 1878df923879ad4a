"""The real graph with a remote tier: tier 1 the local vLLM engine (SmolLM2-135M-Instruct, as in configs/local.yaml),
tier 2 a RemoteTier forwarding to a stand-in OpenAI-compatible server on loopback (scripts/stand_in_openai.py, a
subprocess, real HTTP) that requires an API key. One graph for every case (the router LLM off to start faster);
each request scripts the stand-in by a directive in its prompt. The logic without Ray: tests/test_remote_tier.py."""

import glob
import json
import os
import time
from contextlib import ExitStack

import httpx
import pytest
from common import free_port, local_args
from conftest import openai_error
from stand_in_openai import running

from app.serve.local import local_graph

pytestmark = pytest.mark.serve

KEY = "sk-remote-graph-0123456789abcdef"
KEY_ENV = "TIERROUTE_TEST_REMOTE_GRAPH_KEY"
APP = "tierroute-remote"
REMOTE = "tier2-remote"
REMOTE_TIMEOUT_S = 2.0


def chat(content, model=REMOTE, **extra):
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 4, **extra}


@pytest.fixture(scope="module")
def graph():
    port = free_port()
    os.environ[KEY_ENV] = KEY
    stack = ExitStack()
    try:
        stand_in = {"url": stack.enter_context(running(port, KEY)), "port": port, "stack": stack}
        args = local_args()
        args["router_llm"]["enabled"] = False
        args["ingress"]["log_prompts"] = False
        args["fallback"] = {"down": True, "up": False, "tier_timeout_s": 10}
        args["tier2"] = {
            "model_id": REMOTE,
            "remote": {"base_url": stand_in["url"], "model": "stand-in-model", "api_key_env": KEY_ENV, "timeout_s": REMOTE_TIMEOUT_S, "max_in_flight": 8},
            "replica": {"num_cpus": 0.05, "max_ongoing_requests": 32},
        }
        with local_graph(args, name=APP) as url, httpx.Client(base_url=url, timeout=120) as client:
            yield client, stand_in
    finally:
        stack.close()
        os.environ.pop(KEY_ENV, None)


def stand_in_stats(stand_in) -> dict:
    return httpx.get(stand_in["url"].removesuffix("/v1") + "/stats").json()


def test_models_and_readiness_list_the_remote_tier(graph):
    client, _ = graph
    models = client.get("/v1/models").json()["data"]
    assert [m["id"] for m in models] == ["auto", "tier1-small", REMOTE] and models[0]["metadata"]["routes_to"] == ["tier1-small", REMOTE]
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["tiers"] == {"tier1-small": "ready", REMOTE: "ready"}


def test_unary_answer_from_the_remote_tier(graph):
    client, stand_in = graph
    r = client.post("/v1/chat/completions", json=chat("What is two plus two?"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == REMOTE and body["choices"][0]["message"]["content"] == "word0 word1 word2 word3"
    assert body["tierroute"]["tier"] == 2 and r.headers["x-tierroute-model"] == REMOTE and body["usage"]["completion_tokens"] == 4
    assert stand_in_stats(stand_in)["models"][-1] == "stand-in-model"
    comp = client.post("/v1/completions", json={"model": REMOTE, "prompt": "Say hi", "max_tokens": 2})
    assert comp.status_code == 200 and comp.json()["choices"][0]["text"] == "word0 word1" and comp.json()["model"] == REMOTE


def test_stream_from_the_remote_tier(graph):
    client, _ = graph
    with client.stream("POST", "/v1/chat/completions", json=chat("Count please", stream=True, stream_options={"include_usage": True})) as s:
        assert s.status_code == 200 and s.headers["x-tierroute-tier"] == '2;name="tier2"'
        events = [line for line in s.iter_lines() if line]
    assert events[-1] == "data: [DONE]" and events.count("data: [DONE]") == 1
    objs = [json.loads(e[6:]) for e in events[:-1]]
    assert objs[0]["tierroute"]["tier"] == 2 and {o["model"] for o in objs} == {REMOTE}
    assert "".join(c["delta"].get("content") or "" for o in objs for c in o["choices"]) == "word0 word1 word2 word3"
    assert objs[-1]["usage"]["completion_tokens"] == 4


def test_a_stream_the_client_leaves_is_closed_at_the_remote(graph):
    client, stand_in = graph
    before = stand_in_stats(stand_in).get("streams_cut", 0)
    body = chat("[[stand-in: chunk_delay=0.25 words=60]]", stream=True, max_tokens=60)
    with client.stream("POST", "/v1/chat/completions", json=body) as s:
        for i, _ in enumerate(s.iter_lines()):
            if i >= 2:
                break
    end = time.monotonic() + 10
    while time.monotonic() < end and stand_in_stats(stand_in).get("streams_cut", 0) == before:
        time.sleep(0.5)
    assert stand_in_stats(stand_in)["streams_cut"] == before + 1


@pytest.mark.parametrize(
    "directive,cause",
    [("[[stand-in: slow=4]]", "timeout"), ("[[stand-in: status=500]]", "error"), ("[[stand-in: status=503]]", "error")],
)
def test_remote_timeouts_and_server_errors_fall_back_to_tier1(graph, directive, cause):
    client, _ = graph
    r = client.post("/v1/chat/completions", json=chat(f"What is the capital of France? {directive}"))
    assert r.status_code == 200, r.text
    t = r.json()["tierroute"]
    assert t["tier"] == 1 and t["reason"] == "fallback" and t["fallback"] == {"from_tier": 2, "to_tier": 1, "cause": cause}
    assert r.json()["model"] == "tier1-small" and "/srv/secret" not in r.text


def test_a_remote_client_error_is_the_clients_in_openai_shape(graph):
    client, _ = graph
    err = openai_error(client.post("/v1/chat/completions", json=chat("[[stand-in: status=400]]")), 400)
    assert err["message"] == "stand-in 400: scripted" and err["type"] == "invalid_request_error"


def test_429_retry_after_is_honoured_with_fallback(graph):
    client, stand_in = graph
    r = client.post("/v1/chat/completions", json=chat("Hello [[stand-in: status=429 retry_after=3]]"))
    assert r.status_code == 200 and r.json()["tierroute"]["fallback"]["cause"] == "overloaded"
    sent = stand_in_stats(stand_in)["requests"]
    again = client.post("/v1/chat/completions", json=chat("Hello again"))  # within the pause: refused at once, tier 1 serves
    assert again.json()["tierroute"]["fallback"]["cause"] == "overloaded" and stand_in_stats(stand_in)["requests"] == sent
    assert client.get("/readyz").json()["tiers"][REMOTE] == "not ready"
    time.sleep(3.2)
    after = client.post("/v1/chat/completions", json=chat("Hello after the pause"))
    assert after.json()["tierroute"]["tier"] == 2 and stand_in_stats(stand_in)["requests"] == sent + 1


def test_a_refused_key_and_an_unreachable_remote_fall_back(graph):
    """The stand-in restarted with another key (ours is refused), then stopped (nothing listens), then back."""
    client, stand_in = graph
    port, stack = stand_in["port"], stand_in["stack"]
    stack.close()
    with running(port, "sk-some-other-key-0123456789"):
        r = client.post("/v1/chat/completions", json=chat("Hello"))
        assert r.json()["tierroute"]["fallback"] == {"from_tier": 2, "to_tier": 1, "cause": "error"}
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["tiers"][REMOTE] == "not ready" and KEY not in ready.text
    r = client.post("/v1/chat/completions", json=chat("Hello"))
    assert r.json()["tierroute"]["fallback"]["cause"] == "unavailable"
    stand_in["url"] = stack.enter_context(running(port, KEY))
    assert client.post("/v1/chat/completions", json=chat("Hello")).json()["tierroute"]["tier"] == 2


def test_the_key_is_in_no_response_serve_config_or_log(graph):
    client, _ = graph
    import ray
    from ray import serve
    from ray.experimental.internal_kv import _internal_kv_get, _internal_kv_list
    from ray.serve.context import _get_global_client

    seen = client.get("/v1/models").text + client.get("/readyz").text
    seen += json.dumps(_get_global_client().get_serve_details(), default=str) + repr(serve.status())
    assert f"Tier2:{REMOTE}" in seen and KEY not in seen
    # Serve's checkpoint of the application (the deployments' arguments, as the controller stores them)
    stored = b"".join(_internal_kv_get(k, namespace="serve") or b"" for k in _internal_kv_list(b"", namespace="serve"))
    assert KEY_ENV.encode() in stored and KEY.encode() not in stored  # the variable's name is there, its value is not
    logs = glob.glob(os.path.join(ray._private.worker._global_node.get_session_dir_path(), "logs", "**", "*"), recursive=True)
    hits = [f for f in logs if os.path.isfile(f) and KEY in open(f, errors="replace").read()]
    assert len(logs) > 5 and hits == []
