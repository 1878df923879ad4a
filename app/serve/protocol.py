"""The OpenAI protocol at the ingress, without Ray: what a request asks for and how answers are shaped.

* :func:`read_json` — the body, size-limited, as a JSON object;
* :func:`target` — route by complexity (``model`` is the router name) or bypass to the tier a model id names;
* :func:`messages_text`, :func:`prompt_text_of`, :func:`route_text` — the text to score, with ``messages``
  validated once (:data:`app.routing.text.Messages`) for chat completions and ``/v1/route`` alike;
* :func:`validate` — the request model an engine takes, its first error as ``param: message``;
* :class:`APIError` and :func:`install_error_handlers` — every error in OpenAI's shape
  ``{"error": {"message", "type", "param", "code"}}``; a 500 says only its request id (details go to the log);
* :func:`decision_headers`, :func:`routed_field`, :func:`tag_sse` — how a response says it was routed.

Ray Serve LLM's own ingress (``ray.serve.llm.ingress.OpenAiIngress``) is not reused for these: it validates
bodies through FastAPI (its 400s name the offending *value* as ``param``), its error bodies carry the HTTP
status as ``code`` where OpenAI's is a string such as ``model_not_found``, and its last-resort handler puts
the exception's text into 500 responses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from app.validation import first_error
from app.routing.router import Decision
from app.routing.text import Messages, prompt_text
from app.serve.calls import within
from app.serve.fallback import Fallback

logger = logging.getLogger("tierroute.ingress")


class APIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"retry-after": str(self.retry_after)} if self.retry_after is not None else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def unavailable(message: str, retry_after: int, code: str = "service_unavailable") -> APIError:
    """503: nothing can serve the request now; try again after ``retry_after`` seconds."""
    return APIError(503, message, "server_error", code=code, retry_after=retry_after)


def overloaded(message: str, retry_after: int) -> APIError:
    """429: too many requests at once; try again after ``retry_after`` seconds."""
    return APIError(429, message, "rate_limit_error", code="overloaded", retry_after=retry_after)


def timed_out(seconds: float) -> APIError:
    return APIError(504, f"the request did not finish within its deadline of {seconds:g}s", "timeout_error", code="timeout")


def request_id(request: Request) -> str:
    """Serve's proxy sets ``x-request-id``; a request that did not pass it gets a new one."""
    return request.headers.get("x-request-id") or uuid.uuid4().hex


def internal_error(rid: str, what: str = "internal error") -> APIError:
    """A 500 that names only the request id: the cause is in the ingress log under that id."""
    return APIError(500, f"{what} (request id {rid}; details in the server log)", "server_error")


def install_error_handlers(app: FastAPI) -> None:
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = request_id(request)
        logger.error("request %s failed", rid, exc_info=exc)
        return internal_error(rid).response()

    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(Exception, _unexpected)


async def read_json(request: Request, limit: int, max_depth: int = 64) -> dict[str, Any]:
    """The body as a JSON object; 413 past ``limit`` bytes, 400 when it is not a JSON object or nests too deep."""
    if int(request.headers.get("content-length") or 0) > limit:
        raise APIError(413, f"request body is larger than {limit} bytes", code="request_too_large")
    raw = await request.body()
    if len(raw) > limit:
        raise APIError(413, f"request body is larger than {limit} bytes", code="request_too_large")
    check_depth(raw, max_depth)
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise APIError(400, f"request body is not valid JSON: {e}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "request body must be a JSON object", code="invalid_json")
    return data


def check_depth(raw: bytes, max_depth: int) -> None:
    """400 when arrays and objects in ``raw`` nest deeper than ``max_depth`` (before parsing: a deep body
    would exhaust the parser's recursion). Brackets inside strings do not count."""
    if raw.count(b"[") + raw.count(b"{") <= max_depth:  # cannot nest deeper: skip the byte-by-byte scan
        return
    depth, in_string, escaped = 0, False, False
    for b in raw:
        if in_string:
            if escaped:
                escaped = False
            elif b == 0x5C:  # backslash
                escaped = True
            elif b == 0x22:  # quote
                in_string = False
        elif b == 0x22:
            in_string = True
        elif b in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > max_depth:
                raise APIError(400, f"request body nests arrays and objects deeper than {max_depth} levels", code="invalid_json")
        elif b in (0x5D, 0x7D):
            depth -= 1


def target(data: dict[str, Any], router_name: str, by_model: dict[str, int]) -> int | None:
    """None: route by complexity; 1/2: the tier whose model id ``model`` names (404 for any other name)."""
    model = data.get("model")
    if not isinstance(model, str):
        raise APIError(400, "model: a string is required", param="model")
    if model == router_name:
        return None
    if model in by_model:
        return by_model[model]
    known = ", ".join([router_name, *by_model])
    raise APIError(404, f"model {model!r} does not exist; available: {known}", param="model", code="model_not_found")


def messages_text(messages: Any) -> str:
    """The text to score of OpenAI chat ``messages``, validated here once (400, param ``messages``)."""
    if messages is None:
        raise APIError(400, "messages: a non-empty list of messages is required", param="messages")
    try:
        return prompt_text(Messages.validate_python(messages))
    except ValidationError as e:
        loc, msg = first_error(e)
        raise APIError(400, f"messages{'.' + loc if loc else ''}: {msg}", param="messages") from None
    except ValueError as e:  # no user turn
        raise APIError(400, str(e), param="messages") from None


def prompt_text_of(prompt: Any) -> str:
    """The text to score of a completions ``prompt`` (a string, or a list of strings or token ids)."""
    if not isinstance(prompt, (str, list)) or not prompt:
        raise APIError(400, "prompt: a non-empty string is required", param="prompt")
    return prompt_text(prompt if isinstance(prompt, str) else " ".join(map(str, prompt)))


def route_text(data: dict[str, Any]) -> str:
    """``/v1/route``: ``messages`` exactly as chat completions take them, or a non-empty ``prompt`` string."""
    if "messages" in data:
        return messages_text(data["messages"])
    prompt = data.get("prompt")
    if isinstance(prompt, str) and prompt.strip():
        return prompt_text(prompt)
    raise APIError(400, "give 'messages' (a list) or 'prompt' (a non-empty string)", param="messages")


def validate(request_cls: type, data: dict[str, Any]):
    """``request_cls`` (the engine's request model) from ``data``; its first error as a 400 naming the field."""
    try:
        return request_cls.model_validate(data)
    except ValidationError as e:
        loc, msg = first_error(e)
        raise APIError(400, f"{loc}: {msg}" if loc else msg, param=loc or None) from None
    except Exception as e:
        # vLLM's request models raise VLLMValidationError (a client error with the parameter's name)
        # from their own validators, past pydantic; anything else is a server bug (500, logged)
        if type(e).__name__ != "VLLMValidationError":
            raise
        param = getattr(e, "parameter", None)
        raise APIError(400, str(e.args[0]) if e.args else "invalid request", param=param) from None


def engine_error(status: int, message: str, type_: str, param: str | None, rid: str) -> APIError:
    """An engine's error response as an APIError; a server-side one is logged, not echoed."""
    if status >= 500:
        logger.error("request %s: engine error %s %s: %s", rid, status, type_, message)
        return internal_error(rid, "the model failed")
    if "context length" in message:  # vLLM: "This model's maximum context length is ..." / "... exceeds model's maximum context length"
        return APIError(status, message, type_, "messages", code="context_length_exceeded")
    return APIError(status, message, type_, param)


def bypass(tier: int, threshold: float) -> Decision:
    """The decision of a request that named a tier's model: no scoring, said in the same shape."""
    return Decision(tier=tier, complexity_score=0.0, confidence=1.0, threshold=threshold, scorer="bypass", signals={})


@dataclass
class Served:
    """How a request was served: the router's decision and what the ingress made of it.

    ``reason``: ``routed`` (by the decision), ``bypass`` (the request named a tier's model),
    ``fallback`` (the decided tier failed; ``fallback`` says how), ``degraded`` (the embedder
    failed: the configured tier), ``over-cap`` (the key's tier-2 cap sent it to tier 1).
    """

    decision: Decision
    tier: int
    model: str
    reason: str
    fallback: Fallback | None = None
    key: str | None = None

    @classmethod
    def as_decided(cls, d: Decision, model: str, key: str | None = None) -> "Served":
        """Served by the tier ``d`` names: reason ``bypass`` or ``degraded`` where its scorer says so, else ``routed``."""
        return cls(d, d.tier, model, d.scorer if d.scorer in ("bypass", "degraded") else "routed", key=key)


def decision_headers(s: Served) -> dict[str, str]:
    h = {
        "x-tierroute-tier": str(s.tier),
        "x-tierroute-model": s.model,
        "x-tierroute-reason": s.reason,
        "x-tierroute-score": f"{s.decision.complexity_score:.4f}",
        "x-tierroute-router-latency-ms": f"{s.decision.router_latency_ms:.2f}",
    }
    if s.fallback is not None:
        h["x-tierroute-fallback"] = s.fallback.header()
    return h


def routed_field(s: Served) -> dict[str, Any]:
    """The ``tierroute`` field added to a response body (or to the first chunk of a stream)."""
    d = s.decision
    return {
        "tier": s.tier,
        "model": s.model,
        "reason": s.reason,
        "fallback": s.fallback.field() if s.fallback else None,
        "decided_tier": d.tier,
        **d.model_dump(exclude={"tier"}),
    }


async def tag_sse(
    first: list,
    rest,
    routed: dict,
    rid: str,
    deadline_s: float | None = None,
    on_end: Callable[[dict | None, str | None], None] | None = None,
    collect: list[str] | None = None,
) -> AsyncIterator[str]:
    """Relay an engine's SSE chunks (batches of ``data: ...`` strings or error objects).

    The first JSON chunk carries the routing field; the stream ends with exactly one ``data: [DONE]``.
    A failure mid-stream, or the deadline passing (``deadline_s`` from now), ends it with an error
    event in OpenAI's shape before ``[DONE]`` (never a silent cut); the engine request is cancelled.
    ``on_end(usage, error_code)`` is called once at the end with the last usage seen. ``collect``, when
    given, receives the text of the first choice's deltas (for a stream that shadow evaluation sampled).
    """
    loop = asyncio.get_running_loop()
    end = None if deadline_s is None else loop.time() + deadline_s
    tagged, usage, failed = False, None, None
    batch = first
    try:
        while True:
            for chunk in batch:
                if not isinstance(chunk, str):  # an ErrorResponse mid-stream
                    failed = "engine_error"
                    logger.error("request %s: engine error mid-stream: %s", rid, chunk.error.message)
                    yield _sse_error(internal_error(rid, "the model failed mid-stream"))
                    continue
                if chunk.strip() == "data: [DONE]":
                    continue
                if not tagged and chunk.startswith("data: {"):
                    obj = json.loads(chunk[len("data: "):])
                    obj["tierroute"] = routed
                    chunk, tagged = f"data: {json.dumps(obj)}\n\n", True
                if '"usage": {' in chunk or '"usage":{' in chunk:
                    usage = json.loads(chunk[len("data: "):]).get("usage") or usage
                if collect is not None and chunk.startswith("data: {"):
                    collect.append(_delta_text(chunk))
                yield chunk
            try:
                left = None if end is None else max(0.0, end - loop.time())
                batch = await within(rest.__anext__(), left, lambda: rest.cancel())  # cancelled on the tier when given up on
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                failed = "timeout"
                yield _sse_error(timed_out(deadline_s or 0.0))
                break
            except Exception:
                logger.exception("request %s: stream failed mid-way", rid)
                failed = "stream_failed"
                yield _sse_error(internal_error(rid, "the model failed mid-stream"))
                break
        yield "data: [DONE]\n\n"
    finally:
        if on_end is not None:
            on_end(usage, failed)


def _delta_text(chunk: str) -> str:
    try:
        choices = json.loads(chunk[len("data: "):]).get("choices") or []
        return next((c.get("delta", {}).get("content") or "" for c in choices if c.get("index", 0) == 0), "")
    except (ValueError, AttributeError):
        return ""


def _sse_error(e: APIError) -> str:
    return f"data: {json.dumps(e.body())}\n\n"
