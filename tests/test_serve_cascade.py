"""Cascade routing on the real graph: a local Ray cluster, the real MiniLM embedder and real vLLM
engines on the generated tiny models, with verifier artifacts written here (real files, loaded by the
ingress as a user's would be). A fourth ingress's verifier carries a router-LLM check block whose band
covers every score: the graph's real router LLM is asked about every answer.

The verifier's expert embeds the request with tier 1's answer (``embedding: request_answer``, the
MiniLM dimension): its coefficients point at the embedding of :data:`ANCHOR`, so a request that says
ANCHOR is escalated and any other is not, whatever junk the random-weight tier 1 answers. One graph
(``cascade`` mode, buffered streaming) and two more ingresses over its tier engines (early streaming;
cascade_routing with everything direct), so the engines start once."""

import json
import time

import httpx
import pytest
from bench_cascade import add_ingress
from common import free_port, local_args

from app.serve.local import local_graph
from app.serve.prometheus import CASCADE_METRICS
from app.verification.artifact import Logit, Pair, VerifierArtifact, VerifierCheck, VerifierExpert
from app.verification.check import CHECK_PROMPT_VERSION

pytestmark = pytest.mark.serve

APP = "tierroute-cascade"
ANCHOR = "Escalate this request: lattice quantum chromodynamics renormalisation group flow of the gauge coupling."
SIMPLE = "What is the capital of France?"
KEYS = {"main": "sk-main-0123456789abcdef", "capped": "sk-capped-0123456789abcdef"}
ENV = "TIERROUTE_TEST_CASCADE_KEYS"
CAP = 8  # cascade.max_tier1_tokens


CHECK_WEIGHT = 0.05


def write_verifier(path, args, check: bool = False) -> str:
    """A verifier whose score is sigmoid(40 * (cos(embedding, ANCHOR's) - 0.4)), threshold 0.5; ``check``: with a
    router-LLM check consulted for every score (band 1), too light to flip a decision."""
    from app.routing.artifact import load_artifact
    from app.routing.embed import Embedder
    from app.serve.config import AppConfig

    info = load_artifact(None).embedder
    anchor = Embedder(AppConfig.model_validate(args).embedder.embedding_model()).encode([ANCHOR])[0].astype(float)
    logit = Logit(coef=list(40 * anchor), intercept=-40 * 0.4, mean=[0.0] * len(anchor), scale=[1.0] * len(anchor))
    expert = VerifierExpert(candidate="test: anchor", features=[], embedding="request_answer", model=logit)
    art = VerifierArtifact(pair=Pair(tier1="tier1-small", tier2="tier2-large"), embedder=info, experts={"all": expert}, threshold=0.5)
    if check:
        art.check = VerifierCheck(band=1.0, llm_weight=CHECK_WEIGHT, llm_center=0.5, fitted=True, prompt_version=CHECK_PROMPT_VERSION,
                                  score_quantiles=[i / 100 for i in range(101)])  # fmt: skip
    return str(art.save(path))


def cascade_args(verifier: str, mode: str = "cascade", stream: str = "buffer") -> dict:
    args = local_args()
    args["routing"] = {"mode": mode, "cascade": {"verifier": verifier, "stream": stream, "early_tokens": 2, "max_tier1_tokens": CAP, "direct_quantile": 0.0}}
    args["fallback"] = {"down": True, "up": True, "tier_timeout_s": 8}
    args["auth"] = {"keys_env": ENV}
    return args


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    import os

    os.environ[ENV] = json.dumps([{"name": "main", "key": KEYS["main"]}, {"name": "capped", "key": KEYS["capped"], "max_tier2_share": 0.0}])
    verifier = write_verifier(tmp_path_factory.mktemp("verifier") / "anchor.json", local_args())
    mport = free_port()
    metrics = {"_metrics_export_port": mport, "_system_config": {"metrics_report_interval_ms": 2000}}
    args = cascade_args(verifier)
    try:
        with local_graph(args, name=APP, **metrics) as url, httpx.Client(base_url=url, timeout=180, headers=auth()) as client:
            add_ingress(cascade_args(verifier, stream="early"), APP, "cascade-early", "/early")
            add_ingress(cascade_args(verifier, mode="cascade_routing"), APP, "cascade-direct", "/direct")
            checked = write_verifier(tmp_path_factory.mktemp("verifier") / "checked.json", local_args(), check=True)
            add_ingress(cascade_args(checked), APP, "cascade-checked", "/checked", router_llm=True)
            yield client, args, mport
    finally:
        os.environ.pop(ENV, None)


def auth(name="main"):
    return {"authorization": f"Bearer {KEYS[name]}"}


def chat(content, **extra):
    return {"model": "auto", "messages": [{"role": "user", "content": content}], "max_tokens": 4, "ignore_eos": True, **extra}


def sse(client, path, body, **kw):
    """(response headers, the stream's JSON chunks); asserts it is well-formed SSE ending in one [DONE]."""
    with client.stream("POST", path, json=body, **kw) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
        headers = r.headers
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]" and events.count("data: [DONE]") == 1
    return headers, [json.loads(e[6:]) for e in events[:-1]]


def test_tier1_answer_stands_when_the_verifier_accepts_it(graph):
    client, args, _ = graph
    r = client.post("/v1/chat/completions", json=chat(SIMPLE))
    assert r.status_code == 200, r.text
    body, t = r.json(), r.json()["tierroute"]
    assert r.headers["x-tierroute-path"] == "tier1" and r.headers["x-tierroute-tier"] == '1;name="tier1"'
    assert body["model"] == args["tier1"]["model_id"] and t["path"] == "tier1" and t["reason"] == "routed"
    assert t["verifier"]["score"] < 0.5 and t["verifier"]["threshold"] == 0.5 and t["escalation"] is None
    assert abs(float(r.headers["x-tierroute-verifier-score"]) - t["verifier"]["score"]) < 1e-3
    assert body["choices"][0]["logprobs"] is None and body["usage"]["completion_tokens"] == 4  # asked internally, not by the client
    asked = client.post("/v1/chat/completions", json=chat(SIMPLE, logprobs=True)).json()
    assert asked["tierroute"]["path"] == "tier1" and len(asked["choices"][0]["logprobs"]["content"]) == 4
    comp = client.post("/v1/completions", json={"model": "auto", "prompt": SIMPLE, "max_tokens": 4, "ignore_eos": True})
    assert comp.status_code == 200 and comp.json()["tierroute"]["path"] == "tier1" and comp.json()["choices"][0]["logprobs"] is None


def test_escalated_when_the_verifier_says_so(graph):
    client, args, _ = graph
    r = client.post("/v1/chat/completions", json=chat(ANCHOR))
    assert r.status_code == 200, r.text
    body, t = r.json(), r.json()["tierroute"]
    assert r.headers["x-tierroute-path"] == "escalated" and r.headers["x-tierroute-tier"] == '2;name="tier2"' and r.headers["x-tierroute-escalation"] == "verifier"
    assert body["model"] == args["tier2"]["model_id"] and t["tier"] == 2 and t["decided_tier"] == 1
    assert t["verifier"]["score"] >= 0.5 and t["tier1_tokens"] == 4 and body["usage"]["completion_tokens"] == 4


def test_an_answer_cut_at_the_tier1_cap_is_escalated(graph):
    client, _, _ = graph
    t = client.post("/v1/chat/completions", json=chat(SIMPLE, max_tokens=CAP + 4)).json()["tierroute"]
    assert t["path"] == "escalated" and t["escalation"] == "length" and t["tier1_tokens"] == CAP
    at_cap = client.post("/v1/chat/completions", json=chat(SIMPLE, max_tokens=CAP)).json()["tierroute"]
    assert at_cap["path"] == "tier1"  # the client's own limit: tier 2 would be cut there too


def test_buffered_streams(graph):
    client, args, _ = graph
    h, chunks = sse(client, "/v1/chat/completions", chat(SIMPLE, stream=True))
    assert h["x-tierroute-path"] == "tier1" and chunks[0]["tierroute"]["path"] == "tier1"
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == args["tier1"]["model_id"] for c in chunks)
    assert "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"]) and not any(ch.get("logprobs") for c in chunks for ch in c["choices"])
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    _, with_usage = sse(client, "/v1/chat/completions", chat(SIMPLE, stream=True, stream_options={"include_usage": True}))
    assert with_usage[-1]["choices"] == [] and with_usage[-1]["usage"]["completion_tokens"] == 4
    h, chunks = sse(client, "/v1/chat/completions", chat(ANCHOR, stream=True))
    assert h["x-tierroute-path"] == "escalated" and chunks[0]["tierroute"]["tier1_tokens"] == 4
    assert all(c["model"] == args["tier2"]["model_id"] for c in chunks)


def test_early_streams_hold_tier1_until_verified(graph):
    client, args, _ = graph
    h, chunks = sse(client, "/early/v1/chat/completions", chat(SIMPLE, stream=True))
    assert h["x-tierroute-path"] == "tier1" and chunks[0]["tierroute"]["path"] == "tier1"
    assert all(c["model"] == args["tier1"]["model_id"] for c in chunks)
    assert not any(ch.get("logprobs") for c in chunks for ch in c["choices"]) and not any(c.get("usage") for c in chunks)
    assert sum(1 for c in chunks for ch in c["choices"] if ch["delta"].get("content")) >= 1
    h, chunks = sse(client, "/early/v1/chat/completions", chat(ANCHOR, stream=True))
    assert h["x-tierroute-path"] == "escalated" and chunks[0]["tierroute"]["tier1_tokens"] >= 2
    assert all(c["model"] == args["tier2"]["model_id"] for c in chunks)  # nothing of tier 1 reached the client
    r = client.post("/early/v1/chat/completions", json=chat(ANCHOR))  # unary requests are verified whole
    assert r.headers["x-tierroute-path"] == "escalated"


def test_cascade_routing_direct_and_opt_out(graph):
    client, _, _ = graph
    r = client.post("/direct/v1/chat/completions", json=chat(SIMPLE))  # direct_quantile 0: every request is clearly hard
    assert r.headers["x-tierroute-path"] == "direct" and r.json()["tierroute"]["tier"] == 2 and r.json()["tierroute"]["verifier"] is None
    r = client.post("/v1/chat/completions", json=chat(ANCHOR), headers={"x-tierroute-cascade": "off"})
    assert r.headers["x-tierroute-path"] == "routed" and "x-tierroute-verifier-score" not in r.headers
    assert r.json()["tierroute"]["scorer"] != "cascade"  # the pre-generation router decided


def test_key_cap_counts_escalations(graph):
    client, args, _ = graph
    r = client.post("/v1/chat/completions", json=chat(ANCHOR), headers=auth("capped"))
    assert r.status_code == 200 and r.json()["model"] == args["tier1"]["model_id"]
    assert r.headers["x-tierroute-reason"] == "over-cap" and r.headers["x-tierroute-path"] == "tier1" and r.headers["x-tierroute-escalation"] == "verifier"


def test_deadline_covers_both_calls(graph):
    client, _, _ = graph
    # tier 1 answers its capped 8 tokens at once; tier 2 cannot write 2,000 within what is left
    t0 = time.monotonic()
    r = client.post("/v1/chat/completions", json=chat(ANCHOR, max_tokens=900), headers={**auth(), "x-tierroute-timeout": "2"})
    took = time.monotonic() - t0
    assert r.status_code == 200, r.text
    t = r.json()["tierroute"]
    assert t["tier"] == 1 and t["reason"] == "fallback" and t["fallback"] == {"from_tier": 2, "to_tier": 1, "cause": "timeout"}
    assert t["path"] == "tier1" and took < 3.0


def test_metrics_are_exported(graph):
    client, _, mport = graph
    want = {f"ray_{n}_total" if t == "counter" else f"ray_{n}_bucket" for n, t in CASCADE_METRICS.items()}
    text, end = "", time.monotonic() + 60
    while time.monotonic() < end:
        text = httpx.get(f"http://127.0.0.1:{mport}/metrics", timeout=10).text
        if all(w in text for w in want):
            break
        time.sleep(3)
    assert not {w for w in want if w not in text}
    made = [ln for ln in text.splitlines() if ln.startswith("ray_tierroute_escalations_total{") and 'outcome="made"' in ln]
    assert made and any('cause="length"' in ln for ln in text.splitlines() if ln.startswith("ray_tierroute_escalations_total{"))


def test_router_llm_check_is_consulted_in_its_band(graph):
    client = graph[0]
    r = client.post("/checked/v1/chat/completions", json=chat(SIMPLE))
    assert r.status_code == 200, r.text
    t = r.json()["tierroute"]
    v, c = t["verifier"], t["verifier"]["check"]
    assert r.headers["x-tierroute-verifier-check"] == c["outcome"] == "consulted", c
    assert 0 <= c["p_no"] <= 1 and abs(v["score"] - min(1, max(0, c["score_alone"] + CHECK_WEIGHT * (c["p_no"] - 0.5)))) < 1e-5
    assert t["path"] == "tier1" and c["score_alone"] < 0.5  # too light to flip the anchor verifier's decision
    plain = client.post("/v1/chat/completions", json=chat(SIMPLE)).json()["tierroute"]["verifier"]
    assert "check" not in plain  # a verifier without a check block never asks


def test_tier1_down_falls_back_to_tier2(graph):
    """Last: kills tier 1's replica."""
    import ray

    client, args, _ = graph
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(f"SERVE_REPLICA::{APP}#Tier1:")]
    for n in names:
        ray.kill(ray.get_actor(n, namespace="serve"), no_restart=True)
    r = client.post("/v1/chat/completions", json=chat(SIMPLE))
    assert r.status_code == 200, r.text
    t = r.json()["tierroute"]
    assert t["tier"] == 2 and t["reason"] == "fallback" and t["fallback"]["from_tier"] == 1 and t["path"] == "escalated"
    assert r.headers["x-tierroute-tier"] == '2;name="tier2"' and r.headers["x-tierroute-escalation"] == "tier1-failed"
