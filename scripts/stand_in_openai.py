"""A stand-in OpenAI-compatible server on loopback: a remote tier to point configs/local-remote.yaml at, and the
tests' remote endpoint (tests/test_remote_tier.py, tests/test_serve_remote.py). Not a model: it answers with
canned text, but over real HTTP with OpenAI's shapes (unary, SSE streams, errors).

    .venv/bin/python scripts/stand_in_openai.py --port 8100                  # no key needed
    STAND_IN_KEY=sk-test-... .venv/bin/python scripts/stand_in_openai.py    # Authorization: Bearer $STAND_IN_KEY required

Each request is scripted by a directive anywhere in its prompt (the last user message, or the completion's prompt):
``[[stand-in: status=500]]``, ``[[stand-in: status=429 retry_after=3]]``, ``[[stand-in: status=400]]``,
``[[stand-in: slow=2.5]]`` (seconds before answering), ``[[stand-in: chunk_delay=0.3 words=40]]`` (a slow stream).
Without one: an answer of ``words`` words (default 6) at once. ``GET /stats`` says what it saw (requests per
status, streams the client cut, the models asked for, requests without the right key); ``POST /stats/reset`` clears it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import httpx

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

DIRECTIVE = re.compile(r"\[\[stand-in:([^\]]*)\]\]")
MODEL = "stand-in-model"  # the name it serves (any name asked for is answered; /models lists this one)


def directives(text: str) -> dict[str, str]:
    found = DIRECTIVE.search(text or "")
    return dict(kv.split("=", 1) for kv in found.group(1).split() if "=" in kv) if found else {}


def prompt_of(body: dict) -> str:
    if "messages" in body:
        users = [m.get("content") for m in body["messages"] if m.get("role") == "user"]
        last = users[-1] if users else ""
        return last if isinstance(last, str) else json.dumps(last)
    p = body.get("prompt", "")
    return p if isinstance(p, str) else json.dumps(p)


def error(status: int, message: str, type_: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": None, "code": None}}, status_code=status, headers=headers)


def words_of(body: dict, d: dict[str, str]) -> tuple[list[str], int | None]:
    """The canned answer's words (``words`` of them, at most the request's token limit) and that limit."""
    limit = body.get("max_tokens") or body.get("max_completion_tokens")
    n = int(d.get("words", 6))
    n = min(n, int(limit)) if limit else n
    return [f"word{i}" for i in range(n)], (int(limit) if limit else None)


def usage_of(body: dict, n: int) -> dict:
    prompt = len(prompt_of(body).split())
    return {"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n}


def completion(body: dict, chat: bool, d: dict[str, str]) -> dict:
    """A unary answer in OpenAI's shape (no log-probabilities)."""
    words, limit = words_of(body, d)
    choice = {"index": 0, "finish_reason": "length" if limit and len(words) == limit else "stop", "logprobs": None}
    choice.update({"message": {"role": "assistant", "content": " ".join(words)}} if chat else {"text": " ".join(words)})
    obj = "chat.completion" if chat else "text_completion"
    rid = f"standin-{uuid.uuid4().hex[:12]}"
    return {"id": rid, "object": obj, "created": int(time.time()), "model": body.get("model"), "choices": [choice], "usage": usage_of(body, len(words))}


async def events(body: dict, chat: bool, d: dict[str, str], stats: Counter) -> AsyncIterator[str]:
    """An SSE stream in OpenAI's shape, a word a chunk ``chunk_delay`` apart; a stream the client cuts is counted."""
    words, _ = words_of(body, d)
    head = {"id": f"standin-{uuid.uuid4().hex[:12]}", "object": "chat.completion.chunk" if chat else "text_completion", "created": int(time.time()), "model": body.get("model")}
    delay, done = float(d.get("chunk_delay", 0)), False
    stats["streams"] += 1
    try:
        for i, w in enumerate(words):
            piece = ("" if i == 0 else " ") + w
            choice = {"index": 0, "finish_reason": None, "logprobs": None, **({"delta": {"content": piece}} if chat else {"text": piece})}
            yield f"data: {json.dumps({**head, 'choices': [choice]})}\n\n"
            await asyncio.sleep(delay)
        last = {"index": 0, "finish_reason": "stop", "logprobs": None, **({"delta": {}} if chat else {"text": ""})}
        yield f"data: {json.dumps({**head, 'choices': [last]})}\n\n"
        if (body.get("stream_options") or {}).get("include_usage"):
            yield f"data: {json.dumps({**head, 'choices': [], 'usage': usage_of(body, len(words))})}\n\n"
        yield "data: [DONE]\n\n"
        done = True
    finally:
        if not done:
            stats["streams_cut"] += 1


def make_app(key: str | None) -> FastAPI:
    app = FastAPI(title="stand-in OpenAI")
    stats: Counter = Counter()
    models: list[str] = []

    def check(request: Request) -> JSONResponse | None:
        if key and request.headers.get("authorization") != f"Bearer {key}":
            stats["unauthorized"] += 1
            return error(401, "Incorrect API key provided.", "invalid_request_error")
        return None

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/stats")
    async def get_stats():
        return {**stats, "models": models}

    @app.post("/stats/reset")
    async def reset():
        stats.clear()
        models.clear()
        return {}

    @app.get("/v1/models")
    async def list_models(request: Request):
        return check(request) or {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "stand-in"}]}

    async def answer(request: Request, chat: bool):
        refused = check(request)
        if refused is not None:
            return refused
        body = await request.json()
        models.append(body.get("model"))
        d = directives(prompt_of(body))
        stats["requests"] += 1
        await asyncio.sleep(float(d.get("slow", 0)))
        status = int(d.get("status", 200))
        if status != 200:
            stats[f"status_{status}"] += 1
            headers = {"retry-after": d["retry_after"]} if "retry_after" in d else None
            kind = "rate_limit_error" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
            return error(status, f"stand-in {status}: scripted" + (" (internal detail: /srv/secret/path)" if status >= 500 else ""), kind, headers)
        if not body.get("stream"):
            return completion(body, chat, d)
        return StreamingResponse(events(body, chat, d, stats), media_type="text/event-stream")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await answer(request, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await answer(request, chat=False)

    return app


@contextmanager
def running(port: int, key: str | None = None, env_name: str = "STAND_IN_KEY", timeout_s: float = 30) -> Iterator[str]:
    """This server in a subprocess on 127.0.0.1:``port`` (``key`` required when given, passed through the
    environment, never argv); yields its base URL (``.../v1``); stopped (its process alone) on exit."""
    env = {k: v for k, v in os.environ.items() if k != env_name}
    if key:
        env[env_name] = key
    proc = subprocess.Popen([sys.executable, __file__, "--port", str(port), "--key-env", env_name], env=env)
    try:
        end = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"the stand-in server did not start on port {port}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8100)
    ap.add_argument("--key-env", default="STAND_IN_KEY", help="environment variable holding the key clients must send (unset: none needed)")
    args = ap.parse_args()
    import uvicorn

    uvicorn.run(make_app(os.environ.get(args.key_env) or None), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
