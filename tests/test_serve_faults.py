"""Operations on the real graph: API keys and per-key limits, input limits, deadlines, overload,
metrics, decision logs, and faults (tier replicas killed, a tier down, both down, the embedder
down). A local Ray cluster, Serve on a free loopback port, the real MiniLM embedder in its own
deployment and real vLLM engines on the generated tiny models; loads are bounded in count.

The tests run in file order on one graph: the fault tests at the end kill replicas."""

import concurrent.futures as cf
import glob
import json
import os
import time

import httpx
import numpy as np
import pytest
from common import free_port, local_args
from conftest import openai_error

from app.serve.local import local_graph
from app.serve.prometheus import CASCADE_METRICS, METRICS

pytestmark = pytest.mark.serve

SIMPLE = "What is the capital of France?"
HARD = "Write a Python function that implements Dijkstra's algorithm with a binary heap and analyse its time complexity."
KEYS = {"main": "sk-main-0123456789abcdef", "capped": "sk-capped-0123456789abcdef", "limited": "sk-limited-0123456789abcdef"}
ENV = "TIERROUTE_TEST_KEYS"
TIER_TIMEOUT_S = 6.0
APP = "tierroute-faults"


def auth(name="main"):
    return {"authorization": f"Bearer {KEYS[name]}"}


def chat(model, content, **extra):
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 4, "ignore_eos": True, **extra}


@pytest.fixture(scope="module")
def graph():
    os.environ[ENV] = json.dumps(
        [
            {"name": "main", "key": KEYS["main"]},
            {"name": "capped", "key": KEYS["capped"], "max_tier2_share": 0.0},
            {"name": "limited", "key": KEYS["limited"], "requests_per_minute": 3},
        ]
    )
    mport = free_port()
    args = local_args()
    args["embedder"].update(colocate=False, timeout_s=3.0)
    args["ingress"].update(max_concurrent_requests=4, request_timeout_s=120, replica={"num_cpus": 0.1, "max_ongoing_requests": 32})
    args["fallback"] = {"down": True, "up": True, "tier_timeout_s": TIER_TIMEOUT_S}
    args["auth"] = {"keys_env": ENV}
    metrics = {"_metrics_export_port": mport, "_system_config": {"metrics_report_interval_ms": 2000}}
    try:
        with local_graph(args, name=APP, **metrics) as url, httpx.Client(base_url=url, timeout=180) as client:
            yield client, args, mport
    finally:
        os.environ.pop(ENV, None)


def replicas(deployment: str) -> set[str]:
    import ray

    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(f"SERVE_REPLICA::{APP}#{deployment}")}


def kill_replicas(deployment: str) -> set[str]:
    """Kill every replica actor of ``deployment`` (Serve starts new ones); their names."""
    import ray

    names = replicas(deployment)
    for n in names:
        ray.kill(ray.get_actor(n, namespace="serve"), no_restart=True)
    return names


def wait_replaced(deployment: str, killed: set[str], timeout_s: float = 400) -> None:
    """Until a new replica of ``deployment`` runs and the deployment is healthy."""
    from ray import serve

    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        deps = serve.status().applications[APP].deployments
        if replicas(deployment) - killed and all(d.status == "HEALTHY" for name, d in deps.items() if name.startswith(deployment)):
            return
        time.sleep(2)
    raise AssertionError(f"{deployment} did not come back within {timeout_s}s")


def serve_log_lines(replica: str, wait_for: str, timeout_s: float = 20) -> list[str]:
    """Lines holding ``wait_for`` in the Serve logs of replicas whose file name has ``replica``."""
    import ray

    pattern = os.path.join(ray._private.worker._global_node.get_session_dir_path(), "logs", "serve", f"replica_{APP}_{replica}*.log")
    end, lines = time.monotonic() + timeout_s, []
    while time.monotonic() < end and not lines:
        lines = [line for f in glob.glob(pattern) for line in open(f, errors="replace") if wait_for in line]
        time.sleep(1)
    return lines


# --- keys -----------------------------------------------------------------------------------


def test_keys_are_required_where_configured(graph):
    client, _, _ = graph
    assert client.get("/healthz").json() == {"status": "ok"}  # open
    for headers in ({}, {"authorization": "Bearer sk-wrong-0123456789abcdef"}, {"authorization": KEYS["main"]}):
        err = openai_error(client.post("/v1/chat/completions", json=chat("auto", SIMPLE), headers=headers), 401)
        assert err["code"] == "invalid_api_key" and KEYS["main"] not in json.dumps(err)
    openai_error(client.get("/v1/models"), 401)
    assert client.get("/v1/models", headers=auth()).status_code == 200
    r = client.post("/v1/chat/completions", json=chat("auto", SIMPLE), headers=auth())
    assert r.status_code == 200 and r.json()["tierroute"]["reason"] == "routed"


def test_requests_per_minute_per_key(graph):
    client, _, _ = graph
    codes = [client.post("/v1/route", json={"prompt": SIMPLE}, headers=auth("limited")).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = client.post("/v1/route", json={"prompt": SIMPLE}, headers=auth("limited"))
    assert openai_error(r, 429)["code"] == "rate_limit_exceeded" and 1 <= int(r.headers["retry-after"]) <= 60
    assert client.post("/v1/route", json={"prompt": SIMPLE}, headers=auth()).status_code == 200  # other keys unaffected


def test_tier2_cap_per_key_routes_to_tier1_and_says_so(graph):
    client, args, _ = graph
    free = client.post("/v1/chat/completions", json=chat("auto", HARD), headers=auth())
    assert free.json()["tierroute"]["tier"] == 2
    r = client.post("/v1/chat/completions", json=chat("auto", HARD), headers=auth("capped"))
    assert r.status_code == 200, r.text
    t = r.json()["tierroute"]
    assert t["tier"] == 1 and t["decided_tier"] == 2 and t["reason"] == "over-cap" and r.json()["model"] == args["tier1"]["model_id"]
    assert r.headers["x-tierroute-reason"] == "over-cap"


# --- input limits and deadlines -------------------------------------------------------------


@pytest.mark.parametrize(
    "body,param,code",
    [
        ('{"model": "auto", "messages": ' + "[" * 5000 + "]" * 5000 + "}", None, "invalid_json"),
        (json.dumps(chat("auto", SIMPLE, stream="yes")), "stream", None),
        (json.dumps(chat("auto", SIMPLE, temperature=-1)), "temperature", None),
        (json.dumps(chat("auto", "word " * 3000)), "messages", "context_length_exceeded"),
    ],
)
def test_input_limits_name_the_field(graph, body, param, code):
    client, _, _ = graph
    r = client.post("/v1/chat/completions", content=body, headers={**auth(), "content-type": "application/json"})
    err = openai_error(r, 400)
    assert err["param"] == param and err["code"] == code and "Error" not in err["message"]


def test_route_rejects_a_message_without_content(graph):
    client, _, _ = graph
    err = openai_error(client.post("/v1/route", json={"messages": [{"role": "user"}]}, headers=auth()), 400)
    assert err["param"] == "messages"


def test_deadline_answers_504_and_ends_streams_with_an_error_event(graph):
    client, _, _ = graph
    long = chat("auto", SIMPLE, max_tokens=900)
    r = client.post("/v1/chat/completions", json=long, headers={**auth(), "x-tierroute-timeout": "0.3"})
    assert openai_error(r, 504)["code"] == "timeout"
    # the engine call was cancelled on the tier's replica (vLLM aborts the request there), not left running
    assert any(f"{r.headers['x-request-id']} -- CALL chat_once CANCELLED" in line for line in serve_log_lines("Tier1_", wait_for="CANCELLED"))
    with client.stream("POST", "/v1/chat/completions", json={**long, "stream": True}, headers={**auth(), "x-tierroute-timeout": "3"}) as s:
        assert s.status_code == 200
        events = [line for line in s.iter_lines() if line]
    assert events[-1] == "data: [DONE]" and events.count("data: [DONE]") == 1
    last = json.loads(events[-2][6:])
    assert last["error"]["code"] == "timeout" and len(events) > 2  # tokens came, then the deadline
    # the engine is free again: a normal request still completes
    assert client.post("/v1/chat/completions", json=chat("auto", SIMPLE), headers=auth()).status_code == 200


def test_overload_is_429_with_retry_after_and_recovers(graph):
    client, _, _ = graph
    body = chat("auto", SIMPLE, max_tokens=48)

    def one(_):
        return client.post("/v1/chat/completions", json=body, headers=auth())

    with cf.ThreadPoolExecutor(24) as pool:
        rs = list(pool.map(one, range(24)))
    codes = [r.status_code for r in rs]
    rejected = [r for r in rs if r.status_code == 429]
    print(f"overload: sent 24 at concurrency 24 (ingress limit 4): {codes.count(200)} completed, {len(rejected)} rejected")
    assert codes.count(200) + len(rejected) == 24 and rejected and codes.count(200) >= 4
    assert all(openai_error(r, 429)["code"] == "overloaded" and int(r.headers["retry-after"]) >= 1 for r in rejected)
    assert client.post("/v1/chat/completions", json=chat("auto", SIMPLE), headers=auth()).status_code == 200


def test_fuzzed_requests_get_no_5xx_and_openai_shaped_errors(graph):
    """A few hundred generated requests (scripts/fuzz_api.py runs thousands)."""
    from fuzz_api import fuzz

    client, _, _ = graph
    report = fuzz(client, 300, auth())
    print(f"fuzz: {report['counts']}")
    assert report["counts"]["sent"] == 300 and report["counts"].get("2xx", 0) >= 30
    assert report["problems"] == []


def test_label_against_the_graph_resumes_after_being_killed_halfway(graph, tmp_path):
    """tierroute label: both tiers by model id (bypassing routing) and tier 2 as the judge. Tier 2, a tiny
    random-weight model, answers and judges junk: the pipeline, the constrained verdicts, tier 1's recorded
    log-probabilities and the resume are checked."""
    import signal
    import subprocess
    import sys

    from app.calibration.data import load_file
    from app.feedback.label import CHOICES

    client, args, _ = graph
    traffic = tmp_path / "traffic.jsonl"
    traffic.write_text("".join(json.dumps({"prompt": f"Question {i}: what is {i} plus {i}?"}) + "\n" for i in range(6)))
    out = tmp_path / "outcomes.jsonl"
    cmd = [
        sys.executable, "-m", "app.cli", "label", "--input", str(traffic), "--output", str(out), "--endpoint", str(client.base_url),
        "--tier1", args["tier1"]["model_id"], "--tier2", args["tier2"]["model_id"], "--api-key-env", "TR_LABEL_KEY",
        "--max-tokens", "8", "--concurrency", "1",
    ]  # fmt: skip
    env = {**os.environ, "TR_LABEL_KEY": KEYS["main"]}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    end = time.monotonic() + 120
    while time.monotonic() < end and not (out.exists() and out.read_text().count("\n") >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # halfway: no chance to clean up
    proc.wait()
    before = out.read_text().count("\n")
    assert 2 <= before < 6, before
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{before} labelled already" in done.stderr and f"({before} done before, 0 failed" in done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6 and len({r["id"] for r in rows}) == 6
    assert all(set(r["verdicts"]) <= set(CHOICES) and 0 <= r["weak"] <= 1 and r["tokens"]["judge"] > 0 for r in rows)
    assert len(load_file(out)) == 6  # calibrate reads them
    # tier 1's answer and its token log-probabilities, through the ingress, for the cascade's verifier
    assert all(r["answer"] and 1 <= len(r["answer_logprobs"]) == len(r["answer_tokens"]) <= 8 for r in rows)
    assert all(lp <= 0 for r in rows for lp in r["answer_logprobs"])


# --- observability --------------------------------------------------------------------------


def test_metrics_are_exported_to_prometheus(graph):
    client, _, mport = graph
    want = {f"ray_{n}_total" if t == "counter" else f"ray_{n}_bucket" for n, (t, *_) in METRICS.items()
            if n not in ("tierroute_fallbacks", "tierroute_router_llm", "tierroute_verifier_checks", *CASCADE_METRICS) and not n.startswith("tierroute_shadow")}  # fmt: skip
    text, end = "", time.monotonic() + 90
    while time.monotonic() < end:
        text = httpx.get(f"http://127.0.0.1:{mport}/metrics", timeout=10).text
        if all(w in text for w in want):
            break
        time.sleep(3)
    missing = {w for w in want if w not in text}
    assert not missing, f"not exported: {missing}"
    tiers = [line for line in text.splitlines() if line.startswith("ray_tierroute_requests_total{") and 'reason="over-cap"' in line]
    assert tiers and 'tier="1"' in tiers[0]


def test_one_decision_line_per_request_without_prompt_or_key(graph):
    client, _, _ = graph
    r = client.post("/v1/chat/completions", json=chat("auto", "Name three primary colours, tersely please."), headers=auth())
    assert r.status_code == 200, r.text
    rid = r.headers["x-request-id"]
    lines = serve_log_lines("Ingress_", wait_for='"event":"tierroute.decision"')
    assert lines
    text = "".join(lines)
    assert "primary colours" not in text and not any(k in text for k in KEYS.values())
    mine = serve_log_lines("Ingress_", wait_for=f'"request_id":"{rid}"')
    assert len(mine) == 1, mine  # this request's own line, exactly one
    decision = json.loads(mine[0][mine[0].index("{"):])
    assert decision["event"] == "tierroute.decision" and decision["request_id"] == rid
    assert decision["key"] == "main" and decision["tier"] == r.json()["tierroute"]["tier"] and decision["prompt_tokens"] > 0


# --- faults (these kill replicas: keep them last) --------------------------------------------


def most_unsure(prompts: list[str]) -> str:
    """The prompt whose score's traffic quantile is nearest the shipped threshold's (offline, the same artifact)."""
    from app.routing.router import Router

    router = Router.load()
    art = router.artifact
    q = np.asarray(router.score_texts(prompts).quantile)
    return prompts[int(np.argmin(np.abs(q - float(art.quantile_of(art.threshold)))))]


def test_router_llm_down_falls_back_to_the_embedding_score(graph):
    client, _, _ = graph
    rows = [json.loads(line)["prompt"] for line in open(os.path.join(os.path.dirname(__file__), "data", "chat_probe.jsonl"))]
    unsure = most_unsure(rows)  # the centre of the shipped artifact's band: the router LLM is consulted
    for _ in range(3):  # a cold engine's first rating may miss router_llm.timeout_s
        up = client.post("/v1/route", json={"prompt": unsure}, headers=auth()).json()
        if up["llm_consulted"]:
            break
    assert up["llm_consulted"] and up["signals"]["llm"] is not None
    assert len(kill_replicas("RouterLLM")) == 1
    down = client.post("/v1/route", json={"prompt": unsure}, headers=auth()).json()
    assert not down["llm_consulted"] and down["signals"]["llm"] is None and down["llm_fallback"].startswith("router LLM")
    assert down["complexity_score"] == down["signals"]["embedding"]


def test_tier2_down_falls_back_to_tier1_and_says_so(graph):
    client, args, _ = graph
    killed = kill_replicas("Tier2:")
    assert len(killed) == 1
    r = client.post("/v1/chat/completions", json=chat("auto", HARD), headers=auth())
    assert r.status_code == 200, r.text
    t = r.json()["tierroute"]
    assert t["tier"] == 1 and t["decided_tier"] == 2 and t["reason"] == "fallback" and t["fallback"]["from_tier"] == 2
    assert r.headers["x-tierroute-fallback"].startswith("tier2->tier1") and r.json()["model"] == args["tier1"]["model_id"]
    # a stream whose tier fails before its first token is served by the other tier
    with client.stream("POST", "/v1/chat/completions", json=chat("auto", HARD, stream=True), headers=auth()) as s:
        events = [line for line in s.iter_lines() if line]
    assert s.status_code == 200 and s.headers["x-tierroute-tier"] == '1;name="tier1"' and events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["tierroute"]["reason"] == "fallback"
    wait_replaced("Tier2:", killed)


def test_killing_a_tier_replica_under_load_loses_no_request(graph):
    client, _, _ = graph
    n = 40
    body = chat("auto", SIMPLE, max_tokens=16)

    def one(i):
        try:
            return client.post("/v1/chat/completions", json=body, headers=auth())
        except httpx.HTTPError as e:  # a vanished request would show here
            return e

    with cf.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        time.sleep(2)
        killed = kill_replicas("Tier1:")
        rs = [f.result() for f in futures]
    ok = [r for r in rs if isinstance(r, httpx.Response) and r.status_code == 200]
    retryable = [r for r in rs if isinstance(r, httpx.Response) and r.status_code in (429, 503, 504)]
    fell_back = [r for r in ok if r.json()["tierroute"]["reason"] == "fallback"]
    print(f"tier-1 replica killed under load: sent {n}, completed {len(ok)} ({len(fell_back)} by tier 2), retryable errors {len(retryable)}, lost {n - len(ok) - len(retryable)}")
    assert len(ok) + len(retryable) == n  # none vanished, none answered otherwise
    assert all(openai_error(r, r.status_code) and "retry-after" in r.headers for r in retryable if r.status_code != 504)
    assert fell_back  # requests in flight or queued on the dead replica went to tier 2
    assert len(killed) == 1
    wait_replaced("Tier1:", killed)


def test_both_tiers_down_is_503_with_retry_after(graph):
    client, _, _ = graph
    assert len(kill_replicas("Tier1:")) == 1 and len(kill_replicas("Tier2:")) == 1
    r = client.post("/v1/chat/completions", json=chat("auto", SIMPLE), headers=auth())
    err = openai_error(r, 503)
    assert err["type"] == "server_error" and int(r.headers["retry-after"]) >= 1


def test_embedder_down_sends_requests_to_the_degraded_tier(graph):
    client, _, _ = graph
    assert len(kill_replicas("Embedder")) == 1
    r = client.post("/v1/route", json={"prompt": HARD}, headers=auth())
    assert r.status_code == 200, r.text
    assert r.json()["scorer"] == "degraded" and r.json()["reason"] == "degraded" and r.json()["tier"] == 1
