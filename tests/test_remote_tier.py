"""A remote tier's logic without a Ray cluster: app.serve.remote's RemoteTier (its class, called directly) and
app.serve.tiers against a real stand-in OpenAI-compatible server on loopback (scripts/stand_in_openai.py, a
subprocess), and the remote tier's config. The real graph with a remote tier: tests/test_serve_remote.py."""

import asyncio
import json
import logging
import math

import httpx
import numpy as np
import pytest
from common import free_port, local_args
from ray.serve.llm.openai_api_models import ChatCompletionRequest, ChatCompletionResponse, CompletionRequest
from starlette.requests import Request
from stand_in_openai import running
from vllm.entrypoints.serve.engine.protocol import ErrorResponse

from app.serve.config import AppConfig, RemoteConfig, read_key
from app.serve.errors import APIError
from app.serve.fallback import TierFailure
from app.serve.graph import tier_deployment
from app.serve.remote import RemoteClient, RemoteTier, request_body, retry_after_of
from app.serve.tiers import Tiers
from app.validation import describe

KEY = "sk-remote-unit-0123456789abcdef"
KEY_ENV = "TIERROUTE_TEST_REMOTE_KEY"


@pytest.fixture(scope="module")
def server():
    with running(free_port(), KEY) as url:
        yield url


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def remote(url, **kw) -> dict:
    return {"base_url": url, "model": "remote-name", "api_key_env": KEY_ENV, "timeout_s": 5, **kw}


def tier(url, **kw):
    """RemoteTier's own class (what a Serve replica runs), made without Ray."""
    return RemoteTier.func_or_class(remote(url, **kw), "tier2-remote")


def chat(content, **kw):
    return ChatCompletionRequest(model="tier2-remote", messages=[{"role": "user", "content": content}], **{"max_tokens": 8, **kw})


def stats(url) -> dict:
    return httpx.get(url.removesuffix("/v1") + "/stats").json()


def run(coro):
    return asyncio.run(coro)


async def collect(gen) -> list:
    return [item async for batch in gen for item in batch]


# --- the endpoint's answers ------------------------------------------------------------------


def test_unary_chat_and_completions_rename_the_model_both_ways(server, key_env):
    async def go():
        t = tier(server)
        before = len(stats(server)["models"])
        resp = await t.chat_once(chat("hello there"))
        comp = await t.completions_once(CompletionRequest(model="tier2-remote", prompt="say something", max_tokens=3))
        await t.client.aclose()
        return resp, comp, stats(server)["models"][before:]

    resp, comp, asked = run(go())
    assert isinstance(resp, ChatCompletionResponse) and resp.model == "tier2-remote"
    assert resp.choices[0].message.content == "word0 word1 word2 word3 word4 word5" and resp.usage.completion_tokens == 6
    assert comp.model == "tier2-remote" and comp.choices[0].text == "word0 word1 word2"
    assert asked == ["remote-name", "remote-name"]  # the endpoint was asked for its own name


def test_stream_passes_sse_chunks_through_with_the_tiers_model(server, key_env):
    async def go():
        t = tier(server)
        req = chat("stream please", stream=True, stream_options={"include_usage": True, "continuous_usage_stats": True})
        items = await collect(t.chat(req))
        await t.client.aclose()
        return items

    items = run(go())
    assert all(isinstance(i, str) and i.startswith("data: ") and i.endswith("\n\n") for i in items)
    assert items[-1] == "data: [DONE]\n\n"
    objs = [json.loads(i[6:]) for i in items[:-1]]
    assert {o["model"] for o in objs} == {"tier2-remote"}
    assert "".join(c["delta"].get("content") or "" for o in objs for c in o["choices"]) == "word0 word1 word2 word3 word4 word5"
    assert objs[-1]["usage"]["completion_tokens"] == 6  # include_usage went through; vLLM's continuous_usage_stats did not
    assert "continuous_usage_stats" not in request_body(chat("x", stream=True, stream_options={"include_usage": True, "continuous_usage_stats": True}), "m")["stream_options"]


def test_server_error_is_a_502_without_the_endpoints_details(server, key_env):
    async def go():
        t = tier(server)
        out = await t.chat_once(chat("[[stand-in: status=500]]")), await collect(t.chat(chat("[[stand-in: status=503]]", stream=True)))
        await t.client.aclose()
        return out

    unary, streamed = run(go())
    for e in (unary, streamed[0]):
        assert isinstance(e, ErrorResponse) and e.error.code == 502 and "/srv/secret" not in e.error.message
    assert len(streamed) == 1


def test_client_error_keeps_its_status_and_openai_message_only(server, key_env):
    async def go():
        t = tier(server)
        out = await t.chat_once(chat("[[stand-in: status=400]]"))
        await t.client.aclose()
        return out

    e = run(go())
    assert isinstance(e, ErrorResponse) and e.error.code == 400 and e.error.type == "invalid_request_error"
    assert e.error.message == "stand-in 400: scripted" and e.error.param is None


def test_429_retry_after_is_honoured_then_calls_go_through(server, key_env):
    async def go():
        t = tier(server)
        first = await t.chat_once(chat("[[stand-in: status=429 retry_after=1]]"))
        sent = stats(server)["requests"]
        fast = await t.chat_once(chat("hello")), await collect(t.chat(chat("hello", stream=True)))
        still = stats(server)["requests"]
        with pytest.raises(RuntimeError):
            await t.probe()  # not ready while pausing
        await asyncio.sleep(1.1)
        later = await t.chat_once(chat("hello"))
        await t.client.aclose()
        return first, sent, fast, still, later

    first, sent, (fast, streamed), still, later = run(go())
    assert first.error.code == 429 and first.error.retry_after == pytest.approx(1.0)
    assert fast.error.code == 429 and 0 < fast.error.retry_after <= 1.0 and streamed[0].error.code == 429
    assert still == sent  # refused here, fast, without calling the endpoint
    assert isinstance(later, ChatCompletionResponse)


def test_retry_after_header_forms():
    assert retry_after_of("3") == 3.0 and retry_after_of(None) is None and retry_after_of("soon") is None
    assert retry_after_of("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470) == pytest.approx(10.0)


def test_timeout_and_unreachable_endpoint(server, key_env):
    async def go():
        slow = tier(server, timeout_s=0.5)
        a = await slow.chat_once(chat("[[stand-in: slow=3]]"))
        b = await collect(slow.chat(chat("[[stand-in: slow=3]]", stream=True)))
        down = tier(f"http://127.0.0.1:{free_port()}/v1")
        c = await down.chat_once(chat("hello"))
        with pytest.raises(RuntimeError):
            await down.probe()
        for t in (slow, down):
            await t.client.aclose()
        return a, b, c

    a, b, c = run(go())
    assert a.error.code == 504 and b[0].error.code == 504 and c.error.code == 503


def test_a_refused_key_is_a_server_side_failure_logged_without_the_key(server, monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, "sk-wrong-key-0123456789abcdef")

    async def go():
        t = tier(server)
        out = await t.chat_once(chat("hello"))
        with pytest.raises(RuntimeError):
            await t.probe()
        await t.client.aclose()
        return out

    before = stats(server).get("unauthorized", 0)
    with caplog.at_level(logging.INFO):
        e = run(go())
    assert e.error.code == 502 and stats(server)["unauthorized"] == before + 2
    assert "api_key" in caplog.text and "sk-wrong-key" not in caplog.text and KEY not in caplog.text


def test_the_endpoint_stream_is_closed_when_the_caller_gives_up(server, key_env):
    async def go():
        t = tier(server)
        before = stats(server).get("streams_cut", 0)
        gen = t.chat(chat("[[stand-in: chunk_delay=0.3 words=40]]", stream=True, max_tokens=40))
        first = await gen.__anext__()
        await gen.aclose()  # what Serve does to the replica's generator when the ingress cancels the call
        await asyncio.sleep(1.0)
        await t.client.aclose()
        return first, before

    first, before = run(go())
    assert first and first[0].startswith("data: ")
    assert stats(server)["streams_cut"] == before + 1


def test_in_flight_requests_are_bounded(server, key_env):
    async def go():
        t = tier(server, max_in_flight=2)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.gather(*(t.chat_once(chat("[[stand-in: slow=0.5]]")) for _ in range(4)))
        await t.client.aclose()
        return loop.time() - t0

    assert run(go()) >= 0.95  # 4 requests of 0.5 s, 2 at a time


# --- through app.serve.tiers: what the ingress sees ---------------------------------------------


class Call:
    """A Serve handle call in this process (unit-test double of DeploymentResponse): awaitable, cancellable."""

    def __init__(self, coro):
        self.task = asyncio.ensure_future(coro)

    def __await__(self):
        return self.task.__await__()

    def cancel(self):
        self.task.cancel()


class Gen:
    """A streaming handle call in this process (unit-test double of DeploymentResponseGenerator)."""

    def __init__(self, agen):
        self.agen = agen

    def __anext__(self):
        return self.agen.__anext__()

    def cancel(self):
        asyncio.ensure_future(self.agen.aclose())


class Handle:
    """A deployment handle over an object in this process (unit-test double)."""

    def __init__(self, obj, stream=False):
        self.obj, self.stream = obj, stream

    def options(self, stream=False):
        return Handle(self.obj, stream)

    def __getattr__(self, name):
        method = getattr(self.obj, name)
        make = (lambda *a: Gen(method(*a))) if self.stream else (lambda *a: Call(method(*a)))
        return type("M", (), {"remote": staticmethod(make)})()


def http_request() -> Request:
    return Request({"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [(b"x-request-id", b"unit")], "query_string": b""})


def test_tiers_map_a_remote_tiers_failures_like_a_local_tiers(server, key_env):
    async def go():
        t = tier(server)
        tiers = Tiers({2: ("tier2-remote", Handle(t))}, remote=frozenset({2}))
        out = {}
        for name, content in {"ok": "hello", "500": "[[stand-in: status=500]]", "429": "[[stand-in: status=429 retry_after=2]]"}.items():
            try:
                out[name] = await tiers.complete(2, "chat", chat(content), http_request(), 5)
            except (TierFailure, APIError) as e:
                out[name] = e
        try:
            await tiers.stream(2, "chat", chat("hello", stream=True), http_request(), 5)
        except TierFailure as e:
            out["stream-paused"] = e
        out["health"] = await tiers.health()
        await asyncio.sleep(2.1)
        first, gen = await tiers.stream(2, "chat", chat("hello", stream=True), http_request(), 5)
        out["stream"] = first + [i async for b in gen.agen for i in b]
        out["health-after"] = await tiers.health()
        try:
            await tiers.complete(2, "chat", chat("[[stand-in: status=400]]"), http_request(), 5)
        except APIError as e:
            out["400"] = e
        await t.client.aclose()
        return out

    out = run(go())
    assert out["ok"].model == "tier2-remote"
    assert isinstance(out["500"], TierFailure) and out["500"].cause == "error"
    f = out["429"]
    assert isinstance(f, TierFailure) and f.cause == "overloaded" and f.retry_after(7) == 2
    assert out["stream-paused"].cause == "overloaded" and 1 <= out["stream-paused"].retry_after(7) <= 2
    assert out["health"] == {"tier2-remote": "not ready"} and out["health-after"] == {"tier2-remote": "ready"}
    assert out["stream"][-1] == "data: [DONE]\n\n"
    assert out["400"].status == 400 and out["400"].body()["error"]["message"] == "stand-in 400: scripted"


def test_retry_after_of_a_failure_without_one_is_the_ingress_default():
    assert TierFailure(2, "overloaded").retry_after(2) == 2
    assert TierFailure(2, "overloaded", 0.2).retry_after(2) == 1 and TierFailure(2, "overloaded", 4.5).retry_after(2) == math.ceil(4.5)


# --- config -------------------------------------------------------------------------------------


def remote_args(url="http://127.0.0.1:9/v1", **kw) -> dict:
    args = local_args()
    args["tier2"] = {"model_id": "tier2-remote", "remote": remote(url, **kw)}
    return args


def config_error(args) -> str:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as e:
        AppConfig.model_validate(args)
    return describe(e.value)


def test_old_configs_load_unchanged_and_a_remote_tier_loads_and_round_trips():
    assert type(AppConfig.model_validate(local_args()).tier2).__name__ == "EngineTierConfig"
    cfg = AppConfig.model_validate(remote_args())
    assert cfg.tier2.remote.model == "remote-name" and cfg.tier2.replica.num_gpus == 0
    assert AppConfig.model_validate(cfg.model_dump(mode="json")) == cfg  # what the ingress replica re-reads


@pytest.mark.parametrize(
    "change,where",
    [
        (lambda t: t["remote"].update(base_url="ftp://host/v1"), "tier2.remote.base_url"),
        (lambda t: t["remote"].update(base_url="https://user:pw@host/v1"), "tier2.remote.base_url"),
        (lambda t: t["remote"].update(api_key_file="key.txt"), "api_key_env and api_key_file"),
        (lambda t: t["remote"].pop("model"), "tier2.remote.model"),
        (lambda t: t.update(model_source="models/tiny-chat-large"), "remote or the engine's fields"),
        (lambda t: t["remote"].update(max_in_flight=500), "max_in_flight"),
        (lambda t: t["remote"].update(api_key="sk-inline"), "tier2.remote.api_key"),
    ],
)
def test_remote_config_errors_name_the_field(change, where):
    args = remote_args()
    change(args["tier2"])
    msg = config_error(args)
    assert where in msg and "sk-inline" not in msg


def test_the_key_source_must_exist_at_deploy_time(monkeypatch, tmp_path):
    monkeypatch.delenv(KEY_ENV, raising=False)
    cfg = AppConfig.model_validate(remote_args())
    with pytest.raises(ValueError, match=f"tier2.remote.api_key_env: environment variable {KEY_ENV} is not set"):
        tier_deployment(cfg.ladder[1], "tier2")
    missing = RemoteConfig(base_url="http://h/v1", model="m", api_key_file=str(tmp_path / "none"))
    with pytest.raises(ValueError, match="remote.api_key_file: cannot read"):
        read_key(missing)
    (tmp_path / "key").write_text(KEY + "\n")
    assert read_key(RemoteConfig(base_url="http://h/v1", model="m", api_key_file=str(tmp_path / "key"))) == KEY
    monkeypatch.setenv(KEY_ENV, KEY)
    bound = tier_deployment(cfg.ladder[1], "tier2")
    d = bound._bound_deployment
    assert d.init_args[0]["api_key_env"] == KEY_ENV and KEY not in repr((d.init_args, d.init_kwargs, d.ray_actor_options))  # the name only


# --- the cascade with a remote tier 1 -------------------------------------------------------------


def test_the_verifier_judges_a_remote_answer_without_logprobs():
    """A remote tier 1 may not return log-probabilities (the stand-in never does): the verifier then scores
    the answer on its text features, the missing log-probability features at their training means."""
    from app.serve.answers import answer_of
    from app.verification.artifact import load_verifier
    from app.verification.verifier import Answer, Verifier

    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris is the capital."}, "logprobs": None, "finish_reason": "stop"}]}
    ans = answer_of(body, "chat")
    assert ans.logprobs == [] and ans.text == "Paris is the capital."
    v = Verifier(load_verifier(None))
    a = Answer("What is the capital of France?", ans.text, ans.logprobs or None, ans.tokens or None)
    dim = v.artifact.embedder.dim if v.artifact.embedder else 0
    emb = {t: np.full(dim, 1 / math.sqrt(dim)) for t in v.texts(a)}
    verdict = v.verdict(a, emb)
    assert 0.0 <= verdict.score <= 1.0 and not any(k.startswith("lp_") for k in verdict.signals if verdict.signals[k] is None)


def test_the_remote_example_config_is_the_local_default_with_a_remote_tier2():
    import yaml

    from common import ROOT

    remote_cfg = yaml.safe_load((ROOT / "configs/local-remote.yaml").read_text())["applications"][0]["args"]
    local = local_args()
    assert {k: v for k, v in remote_cfg.items() if k != "tier2"} == {k: v for k, v in local.items() if k != "tier2"}
    cfg = AppConfig.model_validate(remote_cfg)
    assert cfg.tier2.remote.base_url == "http://127.0.0.1:8100/v1" and cfg.tier2.remote.api_key_env == "TIERROUTE_REMOTE_KEY"


def test_the_cascade_counts_a_remote_streams_tokens_without_logprobs(server, key_env):
    """Early streaming holds tier 1's first ``early_tokens`` tokens; a remote stream without log-probabilities
    is counted by its content chunks, so the cascade decides early there too."""
    from app.serve.answers import ChunkReader

    async def go():
        t = tier(server)
        items = await collect(t.chat(chat("hello", stream=True, logprobs=True)))
        await t.client.aclose()
        return items

    reader = ChunkReader("chat")
    for item in run(go()):
        reader.add(item)
    assert reader.answer.logprobs == [] and reader.answer.n_tokens == 6 and reader.answer.finish_reason == "stop"
    assert reader.answer.text == "word0 word1 word2 word3 word4 word5"
