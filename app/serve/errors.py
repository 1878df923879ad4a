"""Errors of the ingress in OpenAI's shape, without Ray: what belongs here is how a failure is answered.

* :class:`APIError` and its constructors (:func:`overloaded`, :func:`unavailable`, :func:`timed_out`,
  :func:`internal_error`, :func:`engine_error`) -- ``{"error": {"message", "type", "param", "code"}}``;
* :func:`install_error_handlers` -- every error of an app answered so; a 500 says only its request id
  (:func:`request_id`; details go to the log).

Ray Serve LLM's own ingress (``ray.serve.llm.ingress.OpenAiIngress``) is not reused for these: it validates
bodies through FastAPI (its 400s name the offending *value* as ``param``), its error bodies carry the HTTP
status as ``code`` where OpenAI's is a string such as ``model_not_found``, and its last-resort handler puts
the exception's text into 500 responses.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

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


def engine_error(status: int, message: str, type_: str, param: str | None, rid: str) -> APIError:
    """An engine's error response as an APIError; a server-side one is logged, not echoed."""
    if status >= 500:
        logger.error("request %s: engine error %s %s: %s", rid, status, type_, message)
        return internal_error(rid, "the model failed")
    if "context length" in message:  # vLLM: "This model's maximum context length is ..." / "... exceeds model's maximum context length"
        return APIError(status, message, type_, "messages", code="context_length_exceeded")
    return APIError(status, message, type_, param)


def install_error_handlers(app: FastAPI) -> None:
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = request_id(request)
        logger.error("request %s failed", rid, exc_info=exc)
        return internal_error(rid).response()

    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(Exception, _unexpected)
