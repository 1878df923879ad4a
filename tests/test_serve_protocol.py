"""The ingress's request parsing, errors and response shaping without a cluster: FastAPI's TestClient over
the one parse step of each endpoint (:mod:`app.serve.requests`), :mod:`app.serve.errors` and :mod:`app.serve.responses`."""

import asyncio
import json
import logging

import pytest
from conftest import openai_error
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from app.serve.config import IngressConfig
from app.serve.errors import APIError, engine_error, install_error_handlers
from app.serve.requests import messages_text, parse_chat, parse_completions, parse_route, prompt_text_of, read_json, target_of, validate
from app.serve.responses import tag_sse

TIERS = {"small": 1, "large": 2}
USER = [{"role": "user", "content": "Solve x^2 = 4."}]
INGRESS = IngressConfig(router_name="auto", max_body_bytes=4096)


@pytest.fixture(scope="module")
def client():
    """Each endpoint's one parse step, as the ingress takes it."""
    app = FastAPI()
    install_error_handlers(app)

    def endpoint(path: str, parse):
        @app.post(path)
        async def handle(request: Request):
            parsed = parse(await read_json(request, INGRESS.max_body_bytes), INGRESS, TIERS)
            return {"target": parsed.target, "text": parsed.text} if parsed.endpoint != "route" else {"text": parsed.text}

    endpoint("/chat", parse_chat)
    endpoint("/completions", parse_completions)
    endpoint("/route", parse_route)

    @app.get("/boom")
    async def boom():
        raise RuntimeError("password=hunter2 in /etc/secret")

    return TestClient(app, raise_server_exceptions=False)


def test_target_and_text():
    assert target_of({"model": "auto"}, "auto", TIERS) is None and target_of({"model": "large"}, "auto", TIERS) == 2
    two_users = [*USER, {"role": "assistant", "content": "x = ±2"}, {"role": "user", "content": "Now x^3 = 8."}]
    assert messages_text(two_users) == "Now x^3 = 8.\n\nContext: Solve x^2 = 4."
    assert prompt_text_of(["a", 7]) == "a 7"


def test_chat_and_route_accept_and_reject_messages_alike(client):
    ok = client.post("/chat", json={"model": "auto", "messages": USER})
    assert ok.json() == {"target": None, "text": "Solve x^2 = 4."}
    assert client.post("/route", json={"messages": USER}).json() == {"text": "Solve x^2 = 4."}
    for messages, says in (
        ("hi", "messages: Input should be a valid list"),
        ([], "messages: List should have at least 1 item"),
        ([{"role": "wizard", "content": "x"}], "messages.0.role: Input should be"),
        ([{"role": "system", "content": "x"}], "role 'user'"),
        ([{"role": "user", "content": 5}], "messages.0.content"),
    ):
        chat = openai_error(client.post("/chat", json={"model": "auto", "messages": messages}), 400)
        route = openai_error(client.post("/route", json={"messages": messages}), 400)
        assert chat == route and chat["param"] == "messages" and says in chat["message"], chat
    missing = openai_error(client.post("/chat", json={"model": "auto"}), 400)
    assert missing["param"] == "messages"
    assert openai_error(client.post("/route", json={"prompt": "  "}), 400)["param"] == "messages"


def test_model_and_body_errors(client):
    assert openai_error(client.post("/chat", json={"model": 7, "messages": USER}), 400)["param"] == "model"
    nope = openai_error(client.post("/chat", json={"model": "gpt-9", "messages": USER}), 404)
    assert nope["param"] == "model" and nope["code"] == "model_not_found" and "auto, small, large" in nope["message"]
    assert client.post("/chat", json={"model": "small", "messages": USER}).json()["target"] == 1
    assert openai_error(client.post("/chat", content=b"{nope"), 400)["code"] == "invalid_json"
    assert openai_error(client.post("/chat", content=b"[1, 2]"), 400)["code"] == "invalid_json"
    big = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "x" * 5000}]})
    assert openai_error(client.post("/chat", content=big), 413)["code"] == "request_too_large"
    assert openai_error(client.post("/completions", json={"model": "auto", "prompt": ""}), 400)["param"] == "prompt"


def test_a_500_names_its_request_id_and_logs_the_cause_without_echoing_it(client, caplog):
    with caplog.at_level(logging.ERROR, logger="tierroute.ingress"):
        r = client.get("/boom", headers={"x-request-id": "req-42"})
    err = openai_error(r, 500)
    assert err["type"] == "server_error" and "req-42" in err["message"]
    assert "hunter2" not in r.text and "RuntimeError" not in r.text
    assert any("req-42" in rec.getMessage() and rec.exc_info for rec in caplog.records)


def test_validate_names_the_field_of_the_engines_request_model():
    from ray.serve.llm.openai_api_models import ChatCompletionRequest

    with pytest.raises(APIError) as e:
        validate(ChatCompletionRequest, {"model": "auto", "messages": USER, "max_tokens": "many"})
    assert e.value.status == 400 and e.value.param == "max_tokens" and e.value.message.startswith("max_tokens: ")
    assert validate(ChatCompletionRequest, {"model": "auto", "messages": USER, "max_tokens": 3}).max_tokens == 3
    # vLLM's own validators raise past pydantic: still a 400 naming the parameter (found by scripts/fuzz_api.py)
    with pytest.raises(APIError) as e:
        validate(ChatCompletionRequest, {"model": "auto", "messages": USER, "tool_choice": "required"})
    assert e.value.status == 400 and e.value.param == "tool_choice" and "tools" in e.value.message


def test_engine_errors_keep_client_errors_and_hide_server_ones():
    e = engine_error(400, "prompt is too long", "BadRequestError", "messages", "r1")
    assert (e.status, e.message, e.param) == (400, "prompt is too long", "messages")
    e = engine_error(400, "This model's maximum context length is 1024 tokens. However, ...", "BadRequestError", None, "r1")
    assert e.status == 400 and e.code == "context_length_exceeded" and e.param == "messages"
    e = engine_error(500, "CUDA error: device-side assert at 0x7f", "InternalServerError", None, "r2")
    assert e.status == 500 and "CUDA" not in e.message and "r2" in e.message


class _EngineError:
    class error:
        message = "engine gone at 10.0.0.7"


def _chunk(i, usage=None):
    return f"data: {json.dumps({'id': i, 'choices': [], **({'usage': usage} if usage else {})})}\n\n"


def _collect(first, rest, **kw):
    async def collect():
        return [e async for e in tag_sse(first, rest, {"tier": 1}, "r9", **kw)]

    return asyncio.run(collect())


def test_sse_tags_the_first_json_chunk_and_ends_with_one_done():
    async def rest():
        yield [_chunk(2), _EngineError()]
        yield [_chunk(3, {"prompt_tokens": 5, "completion_tokens": 2}), "data: [DONE]\n\n"]

    ended = []
    events = _collect([_chunk(1)], rest(), on_end=lambda usage, err: ended.append((usage, err)))
    assert events[-1] == "data: [DONE]\n\n" and events.count("data: [DONE]\n\n") == 1
    objs = [json.loads(e[6:]) for e in events[:-1]]
    assert objs[0] == {"id": 1, "choices": [], "tierroute": {"tier": 1}}
    # an engine error mid-stream: an OpenAI-shaped error event naming the request id, not the engine's text
    assert "tierroute" not in objs[1] and set(objs[2]["error"]) == {"message", "type", "param", "code"}
    assert "r9" in objs[2]["error"]["message"] and "10.0.0.7" not in events[2] and objs[3]["id"] == 3
    assert ended == [({"prompt_tokens": 5, "completion_tokens": 2}, "engine_error")]


def test_sse_failure_or_deadline_mid_stream_ends_with_an_error_event_and_done():
    class Broken:
        def __init__(self):
            self.n, self.cancelled = 0, False

        def __aiter__(self):
            return self

        async def __anext__(self):
            self.n += 1
            if self.n == 1:
                return [_chunk(2)]
            raise ConnectionError("replica died at 10.0.0.7")

        def cancel(self):
            self.cancelled = True

    events = _collect([_chunk(1)], Broken())
    assert [json.loads(e[6:]).get("id") for e in events[:2]] == [1, 2]
    err = json.loads(events[2][6:])["error"]
    assert err["type"] == "server_error" and "10.0.0.7" not in events[2] and events[3:] == ["data: [DONE]\n\n"]

    class Slow(Broken):
        async def __anext__(self):
            await asyncio.sleep(5)

    slow = Slow()
    ended = []
    events = _collect([_chunk(1)], slow, deadline_s=0.2, on_end=lambda usage, e: ended.append(e))
    err = json.loads(events[1][6:])["error"]
    assert err["code"] == "timeout" and events[2:] == ["data: [DONE]\n\n"]
    assert slow.cancelled and ended == ["timeout"]  # the engine request is cancelled, not left running
