"""tierroute loadtest against the real local graph (configs/local.yaml: MiniLM embedder, router LLM and two
vLLM tiers on CPU) started in-process on a free loopback port. Small: a few requests at concurrency 2."""

import asyncio
import json

import pytest
from common import local_args

from app.loadtest.config import make_config
from app.loadtest.report import text_report
from app.loadtest.session import run_session
from app.serve.local import local_graph

pytestmark = pytest.mark.serve

# clear cases for the shipped artifact, outside the router-LLM band (as in tests/test_serve_graph.py)
SIMPLE = "What is the capital of France?"
HARD = "Write a Python function that implements Dijkstra's algorithm with a binary heap and analyse its time complexity."


@pytest.fixture(scope="module")
def url():
    with local_graph(local_args(), name="tierroute-loadtest") as base_url:
        yield base_url


@pytest.fixture
def mix(tmp_path):
    p = tmp_path / "mix.jsonl"
    rows = [{"prompt": SIMPLE}, {"messages": [{"role": "system", "content": "Be concise."}, {"role": "user", "content": HARD}]}]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_compare_on_the_local_default(url, mix, stream):
    cascade = not stream  # the unary run adds the cascade arm (the endpoint's own mode; the routed arm opts out)
    cfg = make_config(url=url, input=mix, concurrencies="2", requests=10, compare=True, cascade=cascade, stream=stream, max_tokens=8,
                      warmup=1, progress=False, timeout=120, route_capacity=stream, route_concurrency=4,
                      route_requests=20, route_rounds=1)  # fmt: skip
    res = asyncio.run(run_session(cfg, log=lambda m: None))
    arms = {"all-tier2": local_args()["tier2"]["model_id"], "routed": "auto", **({"cascade": "auto"} if cascade else {})}
    assert res["arms"] == arms  # tier 2's id discovered from /v1/models
    level = res["levels"][0]
    t2, routed = level["arms"]["all-tier2"], level["arms"]["routed"]
    for arm in level["arms"].values():
        o = arm["overall"]
        assert o["ok"] == 10 and o["errors"] == 0 and arm["dropped"] == 0
        assert o["output_tokens"] > 0 and o["e2e_ms"]["p50"] > 0
        assert (o["ttft_ms"]["p50"] is not None) == stream
        if stream:
            assert o["ttft_ms"]["p50"] <= o["e2e_ms"]["p99"]
    assert t2["tier_split"] == {"tier2": 1.0}
    # the mix alternates SIMPLE and HARD: the router sends half to each tier, as the graph's headers say
    assert routed["tier_split"] == {"tier1": 0.5, "tier2": 0.5}
    assert routed["overall"]["router_ms"]["p50"] > 0  # x-tierroute-router-latency-ms of routed answers
    assert res["comparison"][0]["routed_tier2_share"] == 0.5
    if stream:
        cap = res["router_capacity"]
        assert cap["decisions_per_s"] > 0 and cap["healthz_per_s"] > 0 and cap["errors_by_kind"] == {}
        assert cap["decisions_per_s_per_core"] == pytest.approx(cap["decisions_per_s"] / cap["router_cores"], abs=0.01)
    assert "routed/all-t2" in text_report(res)
    assert not any("escalat" in p for p in routed["paths"])  # x-tierroute-cascade: off: routed before generation
    if cascade:
        c = level["arms"]["cascade"]
        assert c["escalation_share"] is None or 0.0 <= c["escalation_share"] <= 1.0  # None: the endpoint names no path
        assert "cascade/all-t2" in text_report(res) and "cascade" in res["comparison"][0]
