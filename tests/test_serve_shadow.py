"""Shadow evaluation and the router-LLM fit against the real local graph (Ray Serve, vLLM CPU engines,
MiniLM). The tiny random-weight models answer and judge junk: these tests check the pipeline --
sampling, the off-path jobs, the outcome log in calibrate's format, evaluate --outcomes, the rating
cache and the fitted-or-not artifact -- not the verdicts' wisdom."""

import json
import subprocess
import sys
import time

import httpx
import pytest
from common import ROOT, free_port, local_args

from app.routing.artifact import load_artifact
from app.calibration.data import load_file
from app.feedback.label import CHOICES
from app.serve.local import local_graph

pytestmark = pytest.mark.serve

APP = "tierroute-shadow"
SIMPLE = "What is the capital of France?"
HARD = "Write a Python function that implements Dijkstra's algorithm with a binary heap and analyse its time complexity."


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    from ray import serve

    out = tmp_path_factory.mktemp("shadow") / "outcomes.jsonl"
    port = free_port()
    args = local_args()
    args["shadow"] = {"enabled": True, "sample_rate": 1.0, "max_tokens": 16, "outcomes_path": str(out), "timeout_s": 60}
    args["fallback"] = {"down": True, "up": False, "tier_timeout_s": 20}
    with local_graph(args, name=APP, port=port) as url, httpx.Client(base_url=url, timeout=120) as client:
        yield client, serve.get_deployment_handle("Ingress", APP), args, out.parent, port


def chat(model, content, **extra):
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 8, "ignore_eos": True, **extra}


def rows_in(folder):
    return [json.loads(line) for f in sorted(folder.glob("*.jsonl")) for line in f.read_text().splitlines() if line.strip()]


def wait_state(ingress, done, timeout_s=120):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        st = ingress.shadow_state.remote().result()
        if done(st):
            return st
        time.sleep(1)
    raise AssertionError(f"shadow state never reached the condition: {st}")


def tierroute(*args):
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_routed_requests_are_judged_off_path_into_calibrate_rows(graph):
    client, ingress, args, folder, _ = graph
    served = []
    for prompt in (SIMPLE, HARD):
        r = client.post("/v1/chat/completions", json=chat("auto", prompt))
        assert r.status_code == 200, r.text
        served.append(int(r.headers["x-tierroute-tier"].split(";")[0]))
    with client.stream("POST", "/v1/chat/completions", json=chat("auto", SIMPLE, stream=True)) as r:
        assert r.status_code == 200 and r.read().decode().rstrip().endswith("data: [DONE]")
        served.append(int(r.headers["x-tierroute-tier"].split(";")[0]))
    # a request that names its tier is not routed: never shadowed
    assert client.post("/v1/chat/completions", json=chat(args["tier1"]["model_id"], SIMPLE)).status_code == 200
    st = wait_state(ingress, lambda s: s["in_flight"] == 0 and sum(v for k, v in s["counts"].items() if k.startswith(("judged", "failed", "skipped"))) >= 3)
    assert st["counts"]["started"] == 3, st  # the two routed requests and the routed stream, not the bypass
    rows = rows_in(folder)
    assert st["counts"].get("judged:1", 0) + st["counts"].get("judged:2", 0) == len(rows) == 3, st
    assert sorted(r["routed_tier"] for r in rows) == sorted(served)
    for r in rows:
        assert r["source"] == "shadow" and set(r["verdicts"]) <= set(CHOICES) and r["judge"] == args["tier2"]["model_id"]
        assert r["tokens"]["judge"] > 0 and r["messages"][0]["content"] in (SIMPLE, HARD)
    assert st["tokens_last_hour"] > 0
    # calibrate and evaluate read them as they are
    files = sorted(folder.glob("*.jsonl"))
    assert sum(len(load_file(f)) for f in files) == len(rows)
    done = tierroute("evaluate", "--outcomes", str(folder))
    assert done.returncode == 0, done.stderr
    assert f"{len(rows)} shadow-judged requests" in done.stdout and "tier1_ok" in done.stdout


def test_a_failing_judge_neither_delays_nor_fails_user_requests(graph):
    """A request that fits the engines' context but whose judge prompt (instructions, request and two
    answers) does not: the judge's engine refuses every verdict. Users are served; the jobs fail; no row."""
    client, ingress, args, folder, _ = graph
    probe = client.post("/v1/chat/completions", json=chat(args["tier1"]["model_id"], "word " * 100, max_tokens=1))
    per_word = probe.json()["usage"]["prompt_tokens"] / 100
    prompt = "word " * int(990 / per_word)  # ~990 tokens: the answer (8) fits in 1024, the judge's prompt cannot
    before, prev = len(rows_in(folder)), ingress.shadow_state.remote().result()["counts"]
    for _ in range(3):
        r = client.post("/v1/chat/completions", json=chat("auto", prompt))
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["prompt_tokens"] + 8 <= 1024
    new = lambda s, k: s["counts"].get(k, 0) - prev.get(k, 0)  # noqa: E731
    st = wait_state(ingress, lambda s: s["in_flight"] == 0 and new(s, "started") == 3 and new(s, "failed:error") == 3)
    assert new(st, "judged:1") + new(st, "judged:2") == 0 and len(rows_in(folder)) == before  # nothing half-written


def test_calibrate_fits_the_router_llm_hybrid_through_the_endpoint(graph, tmp_path):
    """The local tiny model's ratings are noise: the fit must say whether they added anything, and cache them."""
    _, _, args, _, port = graph
    data = tmp_path / "own.jsonl"
    lines = [
        json.dumps({"prompt": f"Explain step {i} of the proof that {i} squared is {'even' if i % 2 == 0 else 'odd'}.", "weak": float(i % 3 != 0), "strong": 1.0})
        for i in range(60)
    ]
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "a.json"
    model = args["tier1"]["model_id"]  # any model the endpoint serves; production: the router LLM's own server
    cmd = ["calibrate", "--data", str(data), "--folds", "3", "--output", str(out), "--router-llm", model, "--endpoint", f"http://127.0.0.1:{port}", "--router-llm-limit", "60"]
    done = tierroute(*cmd)
    assert done.returncode == 0, done.stderr
    h = load_artifact(out).hybrid
    assert h.fitted and h.fit["model"] == model and h.fit["rows"] == 60
    assert set(h.fit["apgr_without_llm"]) == {"own APGR"} and (h.llm_weight == 0) == (not h.fit["used"])
    assert "0 cached, 60 new, 0 failed" in done.stderr and "router LLM" in done.stdout
    cache = out.with_name("a.json.ratings.jsonl")
    assert len(cache.read_text().splitlines()) == 60
    again = tierroute(*cmd)
    assert again.returncode == 0 and "60 cached, 0 new, 0 failed" in again.stderr
    assert load_artifact(out).hybrid.model_dump() == h.model_dump()  # the same ratings, the same fit
