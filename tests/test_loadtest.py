"""tierroute loadtest against test doubles of an OpenAI endpoint (httpx.MockTransport): no network, no Ray."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import numpy as np
import pytest

from app.loadtest import errors
from app.loadtest.capacity import router_capacity
from app.loadtest.cli import main as cli_main
from app.loadtest.cli import run as cli_run
from app.loadtest.client import send
from app.loadtest.config import make_config
from app.loadtest.hostcpu import cpu_info
from app.loadtest.mix import chat_body, load_mix
from app.loadtest.plot import plot_results
from app.loadtest.report import compare_table, text_report, write_json
from app.loadtest.runner import closed_loop, open_loop
from app.loadtest.schedule import poisson_arrivals
from app.loadtest.session import run_session
from app.loadtest.stats import percentiles_ms, summarize

BASE = "http://testserver"


class FakeTierroute:
    """Test double of a tierroute ingress: prompts containing 'hard' go to tier 2 (slower), others to tier 1.

    ``tierroute=False`` answers as a plain OpenAI server (no routing headers or field). Counts requests in flight."""

    def __init__(self, delay1=0.01, delay2=0.05, tierroute=True, tokens=5, route_delay=0.0):
        self.delay = {1: delay1, 2: delay2}
        self.tierroute, self.tokens, self.route_delay = tierroute, tokens, route_delay
        self.in_flight = self.max_in_flight = 0
        self.models_seen: list[str] = []
        self.paths: list[str] = []

    def tier_of(self, body) -> int:
        if body.get("model") == "tier2-large":
            return 2
        if body.get("model") == "tier1-small":
            return 1
        return 2 if "hard" in body["messages"][-1]["content"] else 1

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [
                {"id": "auto", "metadata": {"routes_to": ["tier1-small", "tier2-large"]}},
                {"id": "tier1-small", "metadata": {"tier": 1}}, {"id": "tier2-large", "metadata": {"tier": 2}}]})  # fmt: skip
        if request.url.path == "/healthz":
            return httpx.Response(200, json={"status": "ok"})
        body = json.loads(request.content)
        tier = self.tier_of(body)
        if request.url.path == "/v1/route":
            await asyncio.sleep(self.route_delay)
            return httpx.Response(200, json={"tier": tier}, headers={"x-tierroute-router-latency-ms": "3.5"})
        self.models_seen.append(body["model"])
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay[tier])
        finally:
            self.in_flight -= 1
        model = "tier2-large" if tier == 2 else "tier1-small"
        headers = {"x-tierroute-tier": f'{tier};name="tier{tier}"', "x-tierroute-model": model, "x-tierroute-router-latency-ms": "2.0"} if self.tierroute else {}
        usage = {"prompt_tokens": 7, "completion_tokens": self.tokens, "total_tokens": 7 + self.tokens}
        if body.get("stream"):
            return httpx.Response(200, headers={**headers, "content-type": "text/event-stream"}, content=self._sse(model, tier, usage))
        out = {"id": "x", "object": "chat.completion", "model": model, "usage": usage,
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "length"}]}  # fmt: skip
        if self.tierroute:
            out["tierroute"] = {"tier": tier, "model": model}
        return httpx.Response(200, headers=headers, json=out)

    async def _sse(self, model, tier, usage):
        first = {"model": model, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
        if self.tierroute:
            first["tierroute"] = {"tier": tier}
        yield f"data: {json.dumps(first)}\n\n".encode()
        yield f"data: {json.dumps({'model': model, 'choices': [{'index': 0, 'delta': {'content': 'hi'}}]})}\n\n".encode()
        yield f"data: {json.dumps({'model': model, 'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n".encode()


def client_for(handler, **kw) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=BASE, transport=httpx.MockTransport(handler), **kw)


@pytest.fixture
def mix_file(tmp_path):
    """10 requests: 3 hard (tier 2 at the fake), 7 easy; prompts and messages both."""
    rows = [{"prompt": f"easy question {i}"} for i in range(5)]
    rows += [{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": f"easy chat {i}"}]} for i in range(2)]
    rows += [{"prompt": f"hard proof {i}", "label": "complex"} for i in range(3)]
    p = tmp_path / "mix.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def cfg(mix_file, **kw):
    base = {"input": mix_file, "url": BASE, "progress": False, "warmup": 0, "timeout": 5.0}
    return make_config(**{**base, **kw})


# --- configuration ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields,flag",
    [
        ({"rates": "0"}, "--rate"),
        ({"rates": "1,-2"}, "--rate"),
        ({"concurrencies": "2,0"}, "--concurrency"),
        ({"rates": "1", "max_tokens": 0}, "--max-tokens"),
        ({"rates": "1", "requests": 0}, "--requests"),
        ({"rates": "1", "duration": 0}, "--duration"),
        ({"rates": "1", "timeout": -1}, "--timeout"),
        ({"rates": "1", "plot_out": "out.jpg"}, "--plot"),
        ({"rates": "1", "url": "localhost:8000"}, "--url"),
        ({"rates": "1", "router_cores": 0}, "--router-cores"),
        ({"rates": "1", "bogus": 1}, "--bogus"),
        ({}, "--rate"),  # neither mode
        ({"rates": "1", "concurrencies": "2"}, "--concurrency"),
        ({"rates": "1", "tier2_model": "big"}, "--compare"),
        ({"route_capacity": True, "compare": True}, "--compare"),
        ({"route_capacity": True, "plot_out": "p.png"}, "--plot"),
        ({"rates": "1", "cascade": True}, "--compare"),  # the cascade arm is one of --compare's
    ],
)
def test_config_errors_name_the_flag(mix_file, fields, flag):
    with pytest.raises(ValueError) as e:
        make_config(input=mix_file, **fields)
    assert flag in str(e.value)


def test_config_parses_lists_and_normalises_url(mix_file):
    c = make_config(input=mix_file, rates="0.5, 2,4", url="http://h:9/v1/")
    assert c.levels == [0.5, 2.0, 4.0] and c.loop == "open" and c.url == "http://h:9"
    assert make_config(input=mix_file, concurrencies="1,8").levels == [1, 8]
    with pytest.raises(ValueError, match="--input"):
        make_config(input=mix_file.parent / "missing.jsonl", rates="1")


def test_cli_user_errors_exit_2_naming_the_flag(mix_file, capsys, monkeypatch):
    assert cli_main(["loadtest", "--input", str(mix_file), "--concurrency", "0"]) == 2
    assert "tierroute loadtest: error: --concurrency" in capsys.readouterr().err
    monkeypatch.delenv("LT_NO_SUCH_KEY", raising=False)
    assert cli_main(["loadtest", "--input", str(mix_file), "--rate", "1", "--api-key-env", "LT_NO_SUCH_KEY"]) == 2
    assert "--api-key-env LT_NO_SUCH_KEY" in capsys.readouterr().err


# --- mix and schedule -------------------------------------------------------------------------------------------
def test_mix_is_a_seeded_shuffle_of_prompts_and_messages(mix_file):
    a, b, c = load_mix(mix_file, seed=1), load_mix(mix_file, seed=1), load_mix(mix_file, seed=2)
    assert a == b and a != c and len(a) == 10
    texts = sorted(m[-1]["content"] for m in a)
    assert texts == sorted([f"easy question {i}" for i in range(5)] + [f"easy chat {i}" for i in range(2)] + [f"hard proof {i}" for i in range(3)])
    assert any(m[0] == {"role": "system", "content": "be brief"} for m in a)  # messages pass as they are
    assert load_mix(mix_file, seed=1, limit=4) == a[:4]
    body = chat_body(a[0], "auto", 16, stream=True)
    assert body["stream_options"] == {"include_usage": True} and body["max_tokens"] == 16


def test_mix_rejects_invalid_lines_unless_skipped(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"prompt": "ok"}\n{"text": "no prompt"}\n')
    with pytest.raises(ValueError, match="line 2"):
        load_mix(p)
    assert len(load_mix(p, skip_invalid=True)) == 1


def test_poisson_schedule_has_the_mean_rate_and_is_reproducible():
    rate, n = 20.0, 20000
    t = poisson_arrivals(rate, n, None, seed=3)
    gaps = np.diff(np.concatenate([[0.0], t]))
    assert len(t) == n and np.all(gaps > 0)
    assert n / t[-1] == pytest.approx(rate, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)  # exponential gaps, not a fixed spacing
    assert np.array_equal(t, poisson_arrivals(rate, n, None, seed=3))
    assert not np.array_equal(t, poisson_arrivals(rate, n, None, seed=4))
    cut = poisson_arrivals(rate, n, 2.0, seed=3)
    assert np.all(cut < 2.0) and np.array_equal(cut, t[: len(cut)]) and abs(len(cut) - 2 * rate) < 5 * np.sqrt(2 * rate)


# --- one request ------------------------------------------------------------------------------------------------
def run_async(coro):
    return asyncio.run(coro)


def one(handler, body, timeout=5.0):
    async def go():
        async with client_for(handler) as c:
            now = time.perf_counter()
            return await send(c, body, 0, now, now, timeout)

    return run_async(go())


CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def test_streaming_ttft_is_the_first_content_chunk():
    async def slow_stream(request):
        async def gen():
            yield b'data: {"model": "m", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}\n\n'
            await asyncio.sleep(0.15)  # the role chunk came at once: no content yet
            yield b'data: {"model": "m", "choices": [{"index": 0, "delta": {"content": "x"}}]}\n\n'
            await asyncio.sleep(0.3)
            yield b'data: {"model": "m", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 9}}\n\ndata: [DONE]\n\n'

        return httpx.Response(200, headers={"x-tierroute-tier": "1", "content-type": "text/event-stream"}, content=gen())

    o = one(slow_stream, {**CHAT, "stream": True})
    assert o.ok and o.tier == 1 and o.completion_tokens == 9 and o.prompt_tokens == 3
    assert 0.15 <= o.ttft_s < 0.4
    assert o.e2e_s >= 0.45 and o.e2e_s - o.ttft_s >= 0.3


def err(status, body=None, content=None):
    async def h(request):
        return httpx.Response(status, json=body) if content is None else httpx.Response(status, content=content)

    return h


def raising(exc):
    async def h(request):
        raise exc("boom", request=request)

    return h


async def _sleepy(request):
    await asyncio.sleep(1.0)
    return httpx.Response(200, json={})


def sse(*events):
    async def h(request):
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content="".join(f"data: {e}\n\n" for e in events).encode())

    return h


@pytest.mark.parametrize(
    "handler,stream,kind",
    [
        (err(429, {"error": {"message": "busy", "type": "rate_limit_error", "param": None, "code": "overloaded"}}), False, "http_429:overloaded"),
        (err(404, {"error": {"message": "no", "type": "invalid_request_error", "code": "model_not_found"}}), True, "http_404:model_not_found"),
        (err(500, {"error": {"message": "x", "type": "server_error", "code": None}}), False, "http_500:server_error"),
        (err(502, content=b"<html>bad gateway</html>"), False, "http_502:unknown"),
        (raising(httpx.ConnectError), False, errors.CONNECT),
        (raising(httpx.RemoteProtocolError), True, errors.CLOSED),
        (raising(httpx.ReadTimeout), False, errors.TIMEOUT),
        (_sleepy, False, errors.TIMEOUT),
        (err(200, content=b"not json"), False, errors.INVALID),
        (err(200, content=b"[1, 2]"), False, errors.INVALID),
        (sse("[1, 2]", "[DONE]"), True, errors.INVALID),
        (sse('{"choices": [{"delta": {"content": "a"}}]}', '{"error": {"type": "timeout_error", "code": "timeout"}}', "[DONE]"), True, "stream:timeout"),
        (sse('{"choices": [{"delta": {"content": "a"}}]}'), True, errors.INCOMPLETE),
    ],
)
def test_errors_are_classified_by_kind(handler, stream, kind):
    o = one(handler, {**CHAT, "stream": stream}, timeout=0.3)
    assert o.error == kind and not o.ok and o.e2e_s is None


# --- a level, its figures ---------------------------------------------------------------------------------------
def test_closed_loop_figures_per_tier(mix_file):
    fake = FakeTierroute(delay1=0.01, delay2=0.15)
    mix = load_mix(mix_file, seed=0)
    n = 20

    async def go():
        async with client_for(fake) as c:
            return await closed_loop(c, lambda i: chat_body(mix[i % len(mix)], "auto", 8, False), 3, n, 30.0, 5.0, arm="routed")

    run = run_async(go())
    s = summarize(run)
    hard = sum("hard" in mix[i % len(mix)][-1]["content"] for i in range(n))
    assert s["sent"] == n and s["overall"]["ok"] == n and fake.max_in_flight <= 3
    assert s["by_tier"]["tier2"]["requests"] == hard and s["by_tier"]["tier1"]["requests"] == n - hard
    assert s["tier_split"]["tier2"] == pytest.approx(hard / n)
    t1, t2 = s["by_tier"]["tier1"]["e2e_ms"], s["by_tier"]["tier2"]["e2e_ms"]
    assert t1["p50"] < 100 and t2["p50"] >= 150 and t2["p50"] <= t2["p95"] <= t2["p99"]
    tier2_ms = [o.e2e_s * 1000 for o in run.outcomes if o.tier == 2]
    assert t2["p95"] == pytest.approx(np.percentile(tier2_ms, 95), abs=0.01)
    assert s["overall"]["output_tokens"] == 5 * n
    assert s["overall"]["throughput_rps"] == pytest.approx(n / run.wall_s, rel=1e-2)
    assert s["by_tier"]["tier1"]["throughput_rps"] + s["by_tier"]["tier2"]["throughput_rps"] == pytest.approx(s["overall"]["throughput_rps"], abs=0.01)


def test_percentiles_are_numpy_linear_and_empty_is_none():
    assert percentiles_ms([]) == {"p50": None, "p95": None, "p99": None}
    xs = list(np.random.default_rng(0).exponential(0.1, 500))
    got = percentiles_ms(xs)
    for p in (50, 95, 99):
        assert got[f"p{p}"] == pytest.approx(np.percentile(np.array(xs) * 1000, p), abs=0.01)


def test_bounds_on_count_and_time_hold(mix_file):
    mix = load_mix(mix_file)
    bodies = lambda i: chat_body(mix[i % len(mix)], "auto", 8, False)  # noqa: E731

    async def go():
        async with client_for(FakeTierroute(delay1=0.1, delay2=0.1)) as c:
            by_count = await closed_loop(c, bodies, 4, 7, 60.0, 5.0)
            t0 = time.perf_counter()
            by_time = await closed_loop(c, bodies, 2, 10_000, 0.35, 5.0)
            closed_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            open_by_time = await open_loop(c, bodies, 40.0, 10_000, 0.5, 5.0, 256, seed=1)
            open_s = time.perf_counter() - t0
            open_by_count = await open_loop(c, bodies, 200.0, 6, 60.0, 5.0, 256, seed=1)
            return by_count, by_time, closed_s, open_by_time, open_s, open_by_count

    by_count, by_time, closed_s, open_by_time, open_s, open_by_count = run_async(go())
    assert len(by_count.outcomes) == 7
    assert 2 <= len(by_time.outcomes) <= 2 * 5 and closed_s < 0.35 + 0.5  # none starts after 0.35 s; each takes ~0.1 s
    assert len(open_by_time.outcomes) == len(poisson_arrivals(40.0, 10_000, 0.5, 1)) and open_s < 0.5 + 0.6
    assert max(o.due_s for o in open_by_time.outcomes) < 0.5
    assert len(open_by_count.outcomes) == 6


def test_open_loop_sends_on_schedule_and_drops_past_the_cap(mix_file):
    """A slow server must not slow the arrivals (closed loop would); past max_outstanding, arrivals are dropped."""
    mix = load_mix(mix_file)
    bodies = lambda i: chat_body(mix[i % len(mix)], "auto", 8, False)  # noqa: E731
    slow = FakeTierroute(delay1=0.5, delay2=0.5)
    capped = FakeTierroute(delay1=0.5, delay2=0.5)

    async def go():
        async with client_for(slow) as c:
            free = await open_loop(c, bodies, 40.0, 20, 10.0, 5.0, 256, seed=2)
        async with client_for(capped) as c:
            cut = await open_loop(c, bodies, 40.0, 20, 10.0, 5.0, 3, seed=2)
        return free, cut

    free, cut = run_async(go())
    planned = poisson_arrivals(40.0, 20, 10.0, 2)
    assert np.allclose([o.due_s for o in free.outcomes], planned)
    assert slow.max_in_flight >= 10 and free.dropped == 0  # 20 arrivals in ~0.5 s against 0.5 s answers
    assert capped.max_in_flight <= 3 and cut.dropped > 0 and len(cut.outcomes) + cut.dropped == 20
    # open-loop latency counts from the scheduled time: every answer took at least the server's 0.5 s
    assert min(o.e2e_s for o in free.outcomes) >= 0.5


def test_plain_openai_endpoint_is_grouped_by_the_model_that_answered(mix_file):
    fake = FakeTierroute(tierroute=False)
    res = run_async(run_session(cfg(mix_file, concurrencies="2", requests=10), log=lambda m: None, transport=httpx.MockTransport(fake)))
    s = res["levels"][0]["arms"]["routed"]
    assert set(s["by_tier"]) == {"tier1-small", "tier2-large"} and sum(s["tier_split"].values()) == pytest.approx(1.0)


# --- a session: compare, report, JSON, PNG, router capacity --------------------------------------------------------
def test_compare_runs_both_arms_interleaved_on_the_same_mix(mix_file, tmp_path):
    fake = FakeTierroute(delay1=0.005, delay2=0.03)
    c = cfg(mix_file, concurrencies="2,4", requests=10, compare=True, stream=True, json_out=tmp_path / "r.json", plot_out=tmp_path / "r.png")
    res = run_async(run_session(c, log=lambda m: None, transport=httpx.MockTransport(fake)))
    assert res["arms"] == {"all-tier2": "tier2-large", "routed": "auto"}  # tier 2's id from /v1/models
    # level 0: all-tier2 then routed; level 1: routed then all-tier2 (drift hits both alike)
    assert fake.models_seen == ["tier2-large"] * 10 + ["auto"] * 10 + ["auto"] * 10 + ["tier2-large"] * 10
    mix = load_mix(mix_file)
    hard = sum("hard" in m[-1]["content"] for m in mix) / len(mix)
    for level in res["levels"]:
        t2, rt = level["arms"]["all-tier2"], level["arms"]["routed"]
        assert t2["tier_split"] == {"tier2": 1.0} and t2["overall"]["ok"] == 10
        assert rt["tier_split"]["tier2"] == pytest.approx(hard) and rt["overall"]["ok"] == 10
        assert rt["overall"]["ttft_ms"]["p50"] is not None and rt["overall"]["ttft_ms"]["p50"] <= rt["overall"]["e2e_ms"]["p50"]
    cmp0 = res["comparison"][0]
    assert cmp0["throughput"] == pytest.approx(
        res["levels"][0]["arms"]["routed"]["overall"]["throughput_rps"] / res["levels"][0]["arms"]["all-tier2"]["overall"]["throughput_rps"], rel=1e-2
    )
    assert cmp0["e2e_p50"] < 1  # tier 1 answers faster at the fake
    table = compare_table(res["levels"][0], "in flight", markdown=True)
    assert "| throughput (req/s) |" in table and "tier2 100%" in table
    text = text_report(res)
    assert "all-tier2 @ 2" in text and "routed @ 4" in text and "TTFT p50" in text


def test_cli_writes_json_and_png(mix_file, tmp_path, capsys):
    import argparse

    from app.loadtest.cli import add_parser

    parser = argparse.ArgumentParser(prog="tierroute")
    add_parser(parser.add_subparsers(dest="command"))
    out_json, out_png = tmp_path / "out" / "r.json", tmp_path / "out" / "r.png"
    args = parser.parse_args(["loadtest", "--url", BASE, "--input", str(mix_file), "--rate", "50,100", "--requests", "8",
                              "--compare", "--json", str(out_json), "--plot", str(out_png), "--no-progress", "--warmup", "1"])  # fmt: skip
    assert cli_run(args, transport=httpx.MockTransport(FakeTierroute())) == 0
    res = json.loads(out_json.read_text())
    assert [lv["load"] for lv in res["levels"]] == [50.0, 100.0] and res["loop"] == "open"
    assert res["config"]["rates"] == [50.0, 100.0] and res["config"]["requests"] == 8 and "api_key" not in res["config"]
    assert all(s["sent"] + s["dropped"] == 8 for lv in res["levels"] for s in lv["arms"].values())
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out_png.stat().st_size > 10_000
    assert "routed/all-t2" in capsys.readouterr().out


def test_cli_exit_status_1_when_requests_fail(mix_file, tmp_path):
    import argparse

    from app.loadtest.cli import add_parser

    parser = argparse.ArgumentParser(prog="tierroute")
    add_parser(parser.add_subparsers(dest="command"))
    fake = FakeTierroute()

    async def sometimes_429(request):
        if request.url.path == "/v1/chat/completions" and "hard" in request.content.decode():
            return httpx.Response(429, json={"error": {"message": "busy", "type": "rate_limit_error", "code": "overloaded"}})
        return await fake(request)

    out = tmp_path / "r.json"
    args = parser.parse_args(["loadtest", "--url", BASE, "--input", str(mix_file), "--concurrency", "2", "--requests", "10",
                              "--no-progress", "--warmup", "0", "--json", str(out)])  # fmt: skip
    assert cli_run(args, transport=httpx.MockTransport(sometimes_429)) == 1
    s = json.loads(out.read_text())["levels"][0]["arms"]["routed"]
    mix = load_mix(mix_file)
    hard = sum("hard" in m[-1]["content"] for m in mix)
    assert s["overall"]["errors_by_kind"] == {"http_429:overloaded": hard} and s["overall"]["ok"] == 10 - hard
    assert "tier2" not in s["tier_split"]


def test_plot_handles_missing_percentiles(tmp_path, mix_file):
    res = run_async(run_session(cfg(mix_file, concurrencies="1", requests=3), log=lambda m: None, transport=httpx.MockTransport(err(503, {"error": {"code": "service_unavailable"}}))))
    assert res["levels"][0]["arms"]["routed"]["overall"]["errors_by_kind"] == {"http_503:service_unavailable": 3}
    path = plot_results(res, tmp_path / "p.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    write_json(res, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["levels"][0]["arms"]["routed"]["overall"]["e2e_ms"]["p50"] is None


def test_compare_without_a_listed_tier2_model_asks_for_the_flag(mix_file):
    async def no_models(request):
        return httpx.Response(404, json={"error": {"code": "not_found"}})

    with pytest.raises(ValueError, match="--tier2-model"):
        run_async(run_session(cfg(mix_file, concurrencies="1", compare=True), log=lambda m: None, transport=httpx.MockTransport(no_models)))


def test_router_capacity_divides_by_cores_and_compares_with_healthz(mix_file):
    fake = FakeTierroute(route_delay=0.01)
    mix = load_mix(mix_file)

    async def go():
        async with client_for(fake) as c:
            return await router_capacity(c, [{"messages": m} for m in mix], 4, 40, 2, 2.0, "test", 5.0)

    cap = run_async(go())
    assert fake.paths.count("/v1/route") == 40 * 2 + 16 and fake.paths.count("/healthz") == 40 * 2  # warm-up: 4 x concurrency
    assert cap["decisions_per_s"] <= 4 / 0.01 * 1.05  # 4 in flight, 10 ms each
    assert cap["decisions_per_s_per_core"] == pytest.approx(cap["decisions_per_s"] / 2.0, abs=0.01)
    assert cap["route_to_healthz_ratio"] < 1 and cap["server_router_ms"]["p50"] == 3.5 and cap["errors_by_kind"] == {}


def test_route_capacity_alone_runs_no_load_levels(mix_file, capsys):
    import argparse

    from app.loadtest.cli import add_parser

    parser = argparse.ArgumentParser(prog="tierroute")
    add_parser(parser.add_subparsers(dest="command"))
    fake = FakeTierroute()
    args = parser.parse_args(["loadtest", "--url", BASE, "--input", str(mix_file), "--route-capacity", "--route-requests", "10",
                              "--route-concurrency", "2", "--route-rounds", "1", "--router-cores", "4", "--no-progress"])  # fmt: skip
    assert cli_run(args, transport=httpx.MockTransport(fake)) == 0
    assert "/v1/chat/completions" not in fake.paths and fake.paths.count("/v1/route") == 10 + 8
    out = capsys.readouterr().out
    assert "decisions/s per core over 4 cores (--router-cores)" in out


def test_cpu_info_reads_model_and_bf16_flags():
    text = "processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 9R14\n"
    info = cpu_info(text)
    assert info["model"] == "AMD EPYC 9R14" and info["cores"] >= 1
    assert info["flags"]["avx512_bf16"] and not info["flags"]["amx_bf16"] and not info["flags"]["amx_tile"]


# --- cascades: per-path figures, escalation share, tier-1 tokens spent ------------------------------------------------
class FakeCascade(FakeTierroute):
    """A tierroute ingress in a cascade mode: ``auto`` without the opt-out header goes to tier 1 first; 'hard'
    prompts are escalated (tier 1's time, then tier 2's; 5 tier-1 tokens spent), the rest keep tier 1's answer.
    With ``x-tierroute-cascade: off`` it routes as FakeTierroute. ``in_body``: the path in the body, not the headers."""

    def __init__(self, in_body=False, **kw):
        super().__init__(**kw)
        self.in_body = in_body
        self.opt_out: list[tuple[str, str | None]] = []

    async def __call__(self, request):
        if request.url.path != "/v1/chat/completions":
            return await super().__call__(request)
        body = json.loads(request.content)
        off = request.headers.get("x-tierroute-cascade")
        self.opt_out.append((body["model"], off))
        if body["model"] != "auto" or off == "off":
            return await super().__call__(request)
        hard = "hard" in body["messages"][-1]["content"]
        await asyncio.sleep(self.delay[1] + (self.delay[2] if hard else 0))
        tier, path = (2, "escalated") if hard else (1, "tier1")
        info = {"tier": tier, "path": path, "verifier": {"score": 0.9 if hard else 0.1}, "tier1_tokens": 5 if hard else None}
        usage = {"prompt_tokens": 7, "completion_tokens": self.tokens}
        out = {"model": "m", "usage": usage, "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]}
        headers = {"x-tierroute-tier": f'{tier};name="tier{tier}"'}
        if self.in_body:
            out["tierroute"] = info
        else:
            headers.update({"x-tierroute-path": path, "x-tierroute-verifier-score": str(info["verifier"]["score"])})
            if hard:
                headers["x-tierroute-tier1-tokens"] = "5"
        if body.get("stream"):
            first = {"model": "m", "choices": [{"index": 0, "delta": {"content": "hi"}}], **({"tierroute": info} if self.in_body else {})}
            sse = f"data: {json.dumps(first)}\n\ndata: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n"
            return httpx.Response(200, headers={**headers, "content-type": "text/event-stream"}, content=sse.encode())
        return httpx.Response(200, headers=headers, json=out)


@pytest.mark.parametrize("in_body,stream", [(False, False), (True, True)], ids=["headers-unary", "body-stream"])
def test_compare_with_cascade_runs_three_arms_and_counts_paths(mix_file, tmp_path, in_body, stream):
    fake = FakeCascade(in_body=in_body, delay1=0.005, delay2=0.04)
    c = cfg(mix_file, concurrencies="2", requests=20, compare=True, cascade=True, stream=stream)
    res = run_async(run_session(c, log=lambda m: None, transport=httpx.MockTransport(fake)))
    assert res["arms"] == {"all-tier2": "tier2-large", "routed": "auto", "cascade": "auto"}
    # the routed arm opts out of the cascade on every request; the cascade arm never does
    assert {off for m, off in fake.opt_out[20:40]} == {"off"} and {off for m, off in fake.opt_out[40:]} == {None}
    mix = load_mix(mix_file)
    hard = sum("hard" in mix[i % len(mix)][-1]["content"] for i in range(20))
    lv = res["levels"][0]["arms"]
    casc, routed = lv["cascade"], lv["routed"]
    assert casc["paths"] == {"escalated": hard, "tier1": 20 - hard} and routed["paths"] == {}
    assert casc["escalation_share"] == pytest.approx(hard / 20) and casc["escalated"] == hard
    assert casc["tier1_tokens_on_escalated"] == 5 * hard and casc["tier1_tokens_per_escalated"] == 5.0
    assert casc["verifier_score_mean"] == pytest.approx((0.9 * hard + 0.1 * (20 - hard)) / 20)
    assert routed["escalation_share"] is None and routed["tier1_tokens_on_escalated"] is None  # not reported: None, not 0
    esc, kept = casc["by_path"]["escalated"]["e2e_ms"], casc["by_path"]["tier1"]["e2e_ms"]
    assert esc["p50"] >= 45 > kept["p50"]  # an escalated request pays tier 1, then tier 2
    assert casc["tier_split"]["tier2"] == pytest.approx(hard / 20)
    cmp0 = res["comparison"][0]["cascade"]
    assert cmp0["escalation_share"] == casc["escalation_share"] and cmp0["paths"] == casc["paths"]
    assert cmp0["e2e_p99"] == pytest.approx(casc["overall"]["e2e_ms"]["p99"] / lv["all-tier2"]["overall"]["e2e_ms"]["p99"], rel=1e-2)
    table = compare_table(res["levels"][0], "in flight", markdown=True)
    assert "| cascade / all tier 2 |" in table and f"| escalated (cascade) |  |  | {100 * hard / 20:.1f}% |" in table
    text = text_report(res)
    assert "cascade/all-t2" in text and f"paths: escalated x{hard}, tier1 x{20 - hard}" in text
    assert plot_results(res, tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"  # three arms plot as two did
    assert json.loads(write_json(res, tmp_path / "r.json").read_text())["comparison"][0]["cascade"]["paths"] == casc["paths"]


def test_cascade_figures_count_only_successful_requests_that_reported_a_path():
    from app.loadtest.client import Outcome
    from app.loadtest.stats import cascade_figures

    outs = [Outcome(0, 0, 0.1, path="escalated", tier1_tokens=30), Outcome(1, 0, 0.1, path="cascade_escalated"),
            Outcome(2, 0, 0.1, path="tier1"), Outcome(3, 0, 0.1), Outcome(4, 0, error="server", path="escalated", tier1_tokens=99)]  # fmt: skip
    f = cascade_figures(outs)
    assert f["escalated"] == 2 and f["escalation_share"] == pytest.approx(2 / 3, abs=1e-4)  # 3 told a path and succeeded
    assert f["tier1_tokens_on_escalated"] == 30 and f["tier1_tokens_per_escalated"] == 30.0  # the failure's 99 not counted
    assert cascade_figures([Outcome(0, 0, 0.1)])["escalation_share"] is None


def test_malformed_cascade_fields_are_ignored_not_fatal():
    async def handler(request):
        return httpx.Response(200, headers={"x-tierroute-tier1-tokens": "many", "x-tierroute-verifier-score": "high"},
                              json={"model": "m", "choices": [], "tierroute": {"path": 3, "tier1_tokens": True}})  # fmt: skip

    o = one(handler, CHAT)
    assert o.ok and o.path is None and o.tier1_tokens is None and o.verifier_score is None


def test_the_opt_out_header_is_the_serving_one():
    from app.loadtest.session import OPT_OUT
    from app.serve.routing_config import OPT_OUT_HEADER

    assert OPT_OUT == {OPT_OUT_HEADER: "off"}


def test_compare_takes_the_top_tier_of_a_ladder_and_reads_named_tier_headers():
    from app.loadtest.client import Outcome, _from_headers
    from app.loadtest.session import tier2_model_of

    cards = [{"id": "auto", "metadata": {"routes_to": ["s", "m", "l"]}}] + [
        {"id": m, "metadata": {"tier": k, "name": n}} for k, (m, n) in enumerate([("s", "small"), ("m", "medium"), ("l", "large")], start=1)
    ]
    assert tier2_model_of(cards) == "l" and tier2_model_of(cards[:3]) == "m" and tier2_model_of(cards[:1]) is None
    for value, tier in (('3;name="large"', 3), ("2", 2), ("junk", None)):
        o = Outcome(index=0, due_s=0.0)
        _from_headers(o, httpx.Headers({"x-tierroute-tier": value}))
        assert o.tier == tier and (tier is None or o.group() == f"tier{tier}")
