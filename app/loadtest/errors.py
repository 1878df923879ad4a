"""What kind of failure a request met, as a short stable label to count by.

* an HTTP error answer: ``http_<status>:<code>`` with the OpenAI error ``code`` (else its ``type``), e.g.
  ``http_429:overloaded``, ``http_404:model_not_found``, ``http_500:server_error``;
* an error event inside a stream: ``stream:<code>``; a stream that ended without ``[DONE]``: ``stream_incomplete``;
* no answer: ``timeout`` (past ``--timeout``), ``connect_error`` (refused, unreachable),
  ``connection_closed`` (the server dropped it mid-way), ``transport:<httpx exception>`` otherwise;
* an answer that is not the JSON an OpenAI server sends: ``invalid_response``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

TIMEOUT, CONNECT, CLOSED, INVALID, INCOMPLETE = "timeout", "connect_error", "connection_closed", "invalid_response", "stream_incomplete"


def error_code(error: Any) -> str:
    """The ``code`` of an OpenAI error object, else its ``type``, else ``unknown``."""
    if isinstance(error, dict):
        for field in ("code", "type"):
            v = error.get(field)
            if v not in (None, ""):
                return str(v)
    return "unknown"


def http_error(status: int, body: bytes) -> str:
    try:
        err = json.loads(body).get("error")
    except (ValueError, AttributeError):
        err = None
    return f"http_{status}:{error_code(err)}"


def stream_error(error: Any) -> str:
    return f"stream:{error_code(error)}"


def exception_kind(e: BaseException) -> str:
    if isinstance(e, (httpx.TimeoutException, asyncio.TimeoutError, TimeoutError)):
        return TIMEOUT
    if isinstance(e, httpx.ConnectError):
        return CONNECT
    if isinstance(e, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return CLOSED
    if isinstance(e, httpx.TransportError):
        return f"transport:{type(e).__name__}"
    if isinstance(e, (ValueError, KeyError, TypeError, AttributeError)):  # JSON that is not an OpenAI answer
        return INVALID
    raise e
