"""Input limits at the ingress, without Ray: what an engine would take loosely or fail on late.

The engines' request models (vLLM's, through Ray Serve LLM) coerce types (``"stream": "yes"`` is
``true``) and leave ranges to the engine, whose error comes after routing and a Serve hop. Here the
sampling parameters OpenAI defines are checked strictly and with OpenAI's ranges before anything is
routed; every error is a 400 naming the field. Nesting depth and body size are checked while the
body is read (:func:`app.serve.protocol.read_json`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError

from app.validation import first_error
from app.serve.protocol import APIError

Number = StrictInt | StrictFloat
MAX_N = 16  # choices per request


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


def check_sampling(data: dict[str, Any], kind: str) -> None:
    """400 naming the first parameter of ``data`` that is of the wrong type or out of range."""
    try:
        (ChatSampling if kind == "chat" else CompletionSampling).model_validate(data)
    except ValidationError as e:
        loc, msg = first_error(e)
        field = loc.split(".")[0] if loc else None
        raise APIError(400, f"{loc}: {msg}" if loc else msg, param=field) from None


def check_messages(messages: Any, max_messages: int) -> None:
    if isinstance(messages, list) and len(messages) > max_messages:
        raise APIError(400, f"messages: at most {max_messages} messages per request, got {len(messages)}", param="messages")


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
