"""What a request asks for: one parse step per endpoint, from the body to a typed :class:`ParsedRequest`.

Everything the ingress checks about a request's body belongs here, in the order it is checked:
:func:`read_json` (size, nesting depth, a JSON object), then per endpoint :func:`parse_chat`,
:func:`parse_completions` or :func:`parse_route` -- the target (route by complexity, or bypass to the
tier a model id names), the text to score (``messages`` validated once,
:data:`app.routing.text.Messages`, for chat completions and ``/v1/route`` alike), the sampling
parameters OpenAI defines (strictly typed, OpenAI's ranges: the engines' request models coerce
``"stream": "yes"`` to ``true`` and leave ranges to the engine, whose error would come after routing
and a Serve hop), and the engine's own request model. The first failed check is the one 400/404/413
answered (:class:`app.serve.errors.APIError`, naming the field). Also :func:`timeout_of`, the
request's deadline from its header.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError

from app.validation import first_error
from app.routing.text import Messages, prompt_text
from app.serve.errors import APIError
from app.serve.ray_llm import ChatCompletionRequest, CompletionRequest, sanitize_chat_request

Endpoint = Literal["chat", "completions", "route"]
Number = StrictInt | StrictFloat
MAX_N = 16  # choices per request


@dataclass
class ParsedRequest:
    """A request that passed every check of its endpoint.

    ``target``: None to route by complexity, else the tier whose model id the request named;
    ``text``: what the router scores; ``engine_request``: the engine's validated request model
    (None for ``/v1/route``); ``messages``: a chat request's messages as sent (for shadow evaluation).
    """

    endpoint: Endpoint
    target: int | None
    text: str
    engine_request: Any = None
    messages: list | None = None


# --- the body ------------------------------------------------------------------------------


async def read_json(request, limit: int, max_depth: int = 64) -> dict[str, Any]:
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


# --- one parse step per endpoint -------------------------------------------------------------


def parse_chat(data: dict[str, Any], cfg, by_model: dict[str, int]) -> ParsedRequest:
    """A ``/v1/chat/completions`` body; ``cfg``: the ingress config (router name, max messages)."""
    target = target_of(data, cfg.router_name, by_model)
    messages = data.get("messages")
    check_messages(messages, cfg.max_messages)
    text = messages_text(messages)
    check_sampling(data, "chat")
    req = sanitize_chat_request(validate(ChatCompletionRequest, data))  # picklable content parts
    return ParsedRequest("chat", target, text, req, messages)


def parse_completions(data: dict[str, Any], cfg, by_model: dict[str, int]) -> ParsedRequest:
    """A ``/v1/completions`` body."""
    target = target_of(data, cfg.router_name, by_model)
    text = prompt_text_of(data.get("prompt"))
    check_sampling(data, "completions")
    return ParsedRequest("completions", target, text, validate(CompletionRequest, data))


def parse_route(data: dict[str, Any], cfg, by_model: dict[str, int] | None = None) -> ParsedRequest:
    """A ``/v1/route`` body: ``messages`` exactly as chat completions take them, or a non-empty ``prompt`` string."""
    check_messages(data.get("messages"), cfg.max_messages)
    if "messages" in data:
        return ParsedRequest("route", None, messages_text(data["messages"]))
    prompt = data.get("prompt")
    if isinstance(prompt, str) and prompt.strip():
        return ParsedRequest("route", None, prompt_text(prompt))
    raise APIError(400, "give 'messages' (a list) or 'prompt' (a non-empty string)", param="messages")


# --- the checks, in the order the parse steps take them ---------------------------------------


def target_of(data: dict[str, Any], router_name: str, by_model: dict[str, int]) -> int | None:
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


def check_messages(messages: Any, max_messages: int) -> None:
    if isinstance(messages, list) and len(messages) > max_messages:
        raise APIError(400, f"messages: at most {max_messages} messages per request, got {len(messages)}", param="messages")


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


class _Sampling(BaseModel):
    """The OpenAI sampling parameters common to chat and completions; others pass through to the engine."""

    model_config = ConfigDict(extra="ignore")

    stream: StrictBool | None = None
    temperature: Annotated[Number, Field(ge=0, le=2)] | None = None
    top_p: Annotated[Number, Field(gt=0, le=1)] | None = None
    n: Annotated[StrictInt, Field(ge=1, le=MAX_N)] | None = None
    max_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    presence_penalty: Annotated[Number, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[Number, Field(ge=-2, le=2)] | None = None
    seed: StrictInt | None = None
    stream_options: dict[str, Any] | None = None


class ChatSampling(_Sampling):
    max_completion_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    logprobs: StrictBool | None = None
    top_logprobs: Annotated[StrictInt, Field(ge=0, le=20)] | None = None


class CompletionSampling(_Sampling):
    logprobs: Annotated[StrictInt, Field(ge=0, le=5)] | None = None
    echo: StrictBool | None = None


SAMPLING: dict[str, type[_Sampling]] = {"chat": ChatSampling, "completions": CompletionSampling}


def check_sampling(data: dict[str, Any], endpoint: str) -> None:
    """400 naming the first parameter of ``data`` that is of the wrong type or out of range for ``endpoint``."""
    try:
        SAMPLING[endpoint].model_validate(data)
    except ValidationError as e:
        loc, msg = first_error(e)
        field = loc.split(".")[0] if loc else None
        raise APIError(400, f"{loc}: {msg}" if loc else msg, param=field) from None


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


def timeout_of(header: str | None, default_s: float) -> float:
    """The request's deadline in seconds: ``x-tierroute-timeout`` may lower the configured one, never raise it."""
    if header is None:
        return default_s
    try:
        value = float(header)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise APIError(400, "x-tierroute-timeout: a positive number of seconds is required", param="x-tierroute-timeout")
    return min(value, default_s)
