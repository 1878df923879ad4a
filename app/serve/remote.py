"""A tier served by a remote OpenAI-compatible endpoint instead of a vLLM engine (config: a tier's ``remote:`` block).

:class:`RemoteTier` is a Ray Serve deployment with the methods the ingress calls on a
:class:`app.serve.llm.TierServer` (``chat_once``/``completions_once``, the ``chat``/``completions`` streams,
``check_health``) and answers them with the same items: a response model or an ``ErrorResponse``; a stream
yields batches of ``data: ...`` SSE strings. It forwards to ``<base_url>/chat/completions`` and
``/completions`` through one ``httpx.AsyncClient`` per replica (a connection pool, ``remote.timeout_s``,
at most ``remote.max_in_flight`` requests open at once), with ``model`` rewritten to the remote's name and
the answer's ``model`` back to the tier's ``model_id``.

The endpoint's failures become a local tier's (:mod:`app.serve.tiers` turns them into TierFailure or the
client's error):

* cannot connect -> 503 (unavailable); no answer within ``timeout_s`` -> 504 (timeout); a broken connection
  or an answer that is not OpenAI's -> 502 (error);
* 5xx -> 502 (error: fallback may serve it); 429 -> 429 with ``retry_after`` (overloaded): for that long
  (at most ``max_retry_after_s``) this replica refuses at once without calling the endpoint;
* 401/403 (the key was refused) and 404 (no such model there) -> 502: the configuration's fault, not the
  client's; logged (never the key);
* any other 4xx -> the same status with OpenAI's ``message`` and ``type`` of the endpoint's error, nothing
  else of its body.

The API key is read here, when the replica starts (:func:`app.serve.config.read_key`), from the variable or
file the config names; it is sent as ``Authorization: Bearer`` and nowhere else. A stream that the ingress
gives up on (the client went, the deadline passed) is cancelled here, which closes the remote request.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from pydantic import ValidationError
from ray import serve
from ray.serve.llm.openai_api_models import ChatCompletionResponse, CompletionResponse
from vllm.entrypoints.serve.engine.protocol import ErrorInfo, ErrorResponse

from app.serve.config import RemoteConfig, read_key

logger = logging.getLogger("tierroute.remote")

PATHS = {"chat": "/chat/completions", "completions": "/completions"}
RESPONSES = {"chat": ChatCompletionResponse, "completions": CompletionResponse}
CONFIG_FAULTS = (401, 403, 404)  # the endpoint refused the key or does not know the model: not the client's fault
DATA = "data: "


def error(status: int, message: str, type_: str = "server_error", retry_after: float | None = None) -> ErrorResponse:
    """An ``ErrorResponse`` as an engine answers it (``retry_after`` rides along on a 429)."""
    extra = {} if retry_after is None else {"retry_after": retry_after}
    return ErrorResponse(error=ErrorInfo(message=message, type=type_, code=status, **extra))


def retry_after_of(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def openai_error_of(resp: httpx.Response) -> tuple[str | None, str | None]:
    """(message, type) of an error body in OpenAI's shape; (None, None) when it is not one."""
    try:
        err = resp.json().get("error")
    except (ValueError, AttributeError):
        return None, None
    if isinstance(err, str):
        return err, None
    if not isinstance(err, dict):
        return None, None
    message, type_ = err.get("message"), err.get("type")
    return (message if isinstance(message, str) else None), (type_ if isinstance(type_, str) else None)


def request_body(request, model: str) -> dict[str, Any]:
    """The body sent to the endpoint: what the request set, without nulls or vLLM's own stream option, for ``model``."""
    body = request.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    body["model"] = model
    opts = body.get("stream_options")
    if isinstance(opts, dict):
        opts.pop("continuous_usage_stats", None)  # vLLM's; an OpenAI endpoint rejects it
    if not body.get("stream"):
        body.pop("stream_options", None)
    return body


class RemoteClient:
    """The endpoint as a tier (no Ray here): one shared ``httpx.AsyncClient``, a bound on requests in flight,
    and the Retry-After of the endpoint's last 429."""

    def __init__(self, remote: RemoteConfig, model_id: str, key: str | None, transport: httpx.AsyncBaseTransport | None = None):
        self.remote, self.model_id = remote, model_id
        headers = {"authorization": f"Bearer {key}"} if key else {}
        timeout = httpx.Timeout(remote.timeout_s, connect=remote.connect_timeout_s)
        limits = httpx.Limits(max_connections=remote.max_in_flight, max_keepalive_connections=remote.max_in_flight)
        self._http = httpx.AsyncClient(base_url=remote.base_url, headers=headers, timeout=timeout, limits=limits, transport=transport)
        self._slots = asyncio.Semaphore(remote.max_in_flight)
        self._refuse_until = 0.0  # monotonic time until which the endpoint asked us to wait (its 429's Retry-After)
        self.sent = 0  # requests sent to the endpoint (the fast refusals are not)

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- refusals --------------------------------------------------------------------------
    def _refusing(self) -> ErrorResponse | None:
        left = self._refuse_until - time.monotonic()
        if left > 0:
            return error(429, "the remote endpoint asked for a pause (Retry-After)", "rate_limit_error", retry_after=left)
        return None

    def _failed(self, resp: httpx.Response) -> ErrorResponse:
        """The endpoint's error status as a local tier's ``ErrorResponse`` (see the module's docstring)."""
        status, where = resp.status_code, f"remote tier {self.model_id}"
        if status == 429:
            wait = retry_after_of(resp.headers.get("retry-after"))
            if wait is not None:
                wait = min(wait, self.remote.max_retry_after_s)
                self._refuse_until = max(self._refuse_until, time.monotonic() + wait)
            logger.warning("%s: the endpoint answered 429 (Retry-After %s s)", where, "none" if wait is None else f"{wait:g}")
            return error(429, "the remote endpoint is rate limiting", "rate_limit_error", retry_after=wait)
        message, type_ = openai_error_of(resp)
        if status >= 500:
            logger.error("%s: the endpoint answered %s (%s)", where, status, type_ or "no OpenAI error")
            return error(502, "the remote endpoint failed")
        if status in CONFIG_FAULTS:
            what = "refused the API key (check remote.api_key_env / api_key_file)" if status != 404 else "does not know remote.model or the path"
            logger.error("%s: the endpoint %s: HTTP %s", where, what, status)
            return error(502, "the remote endpoint refused the request (configuration)")
        logger.info("%s: the endpoint rejected a request: HTTP %s (%s)", where, status, type_)
        return error(status, message or "the remote endpoint rejected the request", type_ or "invalid_request_error")

    def _transport_failed(self, e: Exception) -> ErrorResponse:
        where = f"remote tier {self.model_id}"
        if isinstance(e, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
            logger.warning("%s: cannot connect to the endpoint (%s)", where, type(e).__name__)
            return error(503, "the remote endpoint cannot be reached")
        if isinstance(e, httpx.TimeoutException | asyncio.TimeoutError):
            logger.warning("%s: the endpoint did not answer within %gs", where, self.remote.timeout_s)
            return error(504, "the remote endpoint did not answer in time", "timeout_error")
        logger.warning("%s: the request failed (%s)", where, type(e).__name__)
        return error(502, "the remote endpoint failed")

    # --- calls -------------------------------------------------------------------------------
    async def unary(self, endpoint: str, request):
        """The endpoint's response to a non-streaming request as the engine's response model, or an ``ErrorResponse``."""
        refused = self._refusing()
        if refused is not None:
            return refused
        body = request_body(request, self.remote.model)
        async with self._slots:
            self.sent += 1
            try:
                async with asyncio.timeout(self.remote.timeout_s):
                    resp = await self._http.post(PATHS[endpoint], json=body)
            except (httpx.HTTPError, asyncio.TimeoutError) as e:
                return self._transport_failed(e)
        if resp.status_code != 200:
            return self._failed(resp)
        try:
            data = resp.json()
            data["model"] = self.model_id
            return RESPONSES[endpoint].model_validate(data)
        except (ValueError, TypeError, ValidationError):
            logger.error("remote tier %s: the endpoint's 200 answer is not an OpenAI %s response", self.model_id, endpoint)
            return error(502, "the remote endpoint answered something that is not an OpenAI response")

    async def stream(self, endpoint: str, request) -> AsyncIterator[list]:
        """Batches of SSE ``data: ...`` strings (the model renamed), as an engine's stream yields them; a failure
        before the first chunk is one ``ErrorResponse``, one after it an ``ErrorResponse`` item that ends the stream."""
        refused = self._refusing()
        if refused is not None:
            yield [refused]
            return
        body = request_body(request, self.remote.model)
        async with self._slots:
            self.sent += 1
            try:
                async with self._http.stream("POST", PATHS[endpoint], json=body) as resp:
                    if resp.status_code != 200:
                        await resp.aread()
                        yield [self._failed(resp)]
                        return
                    async for batch in self._events(resp):
                        yield batch
            except (httpx.HTTPError, asyncio.TimeoutError) as e:
                yield [self._transport_failed(e)]

    async def _events(self, resp: httpx.Response) -> AsyncIterator[list]:
        """The SSE events of ``resp``, a batch per network read, each ``data: {...}`` with the tier's model id."""
        pending = ""
        async for text in resp.aiter_text():
            pending += text.replace("\r\n", "\n")
            *events, pending = pending.split("\n\n")
            batch = [item for item in (self._event(e) for e in events) if item is not None]
            if batch:
                yield batch
        if pending.strip():
            last = self._event(pending)
            if last is not None:
                yield [last]

    def _event(self, event: str):
        """One SSE event as the engine's item: ``data: ...\\n\\n`` (renamed), an ``ErrorResponse``, or None (a comment)."""
        data = "".join(line[len("data:"):].lstrip(" ") for line in event.split("\n") if line.startswith("data:"))
        if not data:
            return None
        if data.strip() == "[DONE]":
            return "data: [DONE]\n\n"
        try:
            obj = json.loads(data)
        except ValueError:
            logger.error("remote tier %s: a stream event is not JSON", self.model_id)
            return error(502, "the remote endpoint's stream broke")
        if "error" in obj and "choices" not in obj:
            _, type_ = (obj["error"].get("message"), obj["error"].get("type")) if isinstance(obj["error"], dict) else (None, None)
            logger.error("remote tier %s: the endpoint sent an error mid-stream (%s)", self.model_id, type_)
            return error(502, "the remote endpoint failed mid-stream")
        if "model" in obj:
            obj["model"] = self.model_id
        return f"{DATA}{json.dumps(obj)}\n\n"

    async def probe(self) -> None:
        """Raise unless the endpoint answers ``GET <base_url>/models`` (a 404 counts: not every endpoint lists models);
        a refused key, a server error, a 429 pause or no answer raise."""
        if self._refusing() is not None:
            raise RuntimeError(f"remote tier {self.model_id}: pausing on the endpoint's Retry-After")
        try:
            resp = await self._http.get("/models", timeout=self.remote.connect_timeout_s)
        except httpx.HTTPError as e:
            raise RuntimeError(f"remote tier {self.model_id}: the endpoint cannot be reached ({type(e).__name__})") from None
        if resp.status_code >= 500 or resp.status_code in (401, 403, 429):
            raise RuntimeError(f"remote tier {self.model_id}: the endpoint answered {resp.status_code} to GET /models")


@serve.deployment
class RemoteTier:
    """A tier whose answers come from a remote OpenAI-compatible endpoint; the ingress calls it as a TierServer."""

    def __init__(self, remote: dict, model_id: str):
        logging.getLogger("httpx").setLevel(logging.WARNING)  # no line per request (the URL only, but noise)
        cfg = RemoteConfig.model_validate(remote)
        self.client = RemoteClient(cfg, model_id, read_key(cfg))  # a missing key fails the replica's start, naming the field

    async def chat_once(self, request, raw_request_info=None):
        return await self.client.unary("chat", request)

    async def completions_once(self, request, raw_request_info=None):
        return await self.client.unary("completions", request)

    async def chat(self, request, raw_request_info=None):
        async for batch in self.client.stream("chat", request):
            yield batch

    async def completions(self, request, raw_request_info=None):
        async for batch in self.client.stream("completions", request):
            yield batch

    async def check_health(self) -> None:
        """Serve's check of the replica: alive. The endpoint's own health is :meth:`probe` (the ingress's /readyz):
        a remote that is down must not make Serve restart this replica."""

    async def probe(self) -> None:
        await self.client.probe()

    async def sent(self) -> int:
        """Requests this replica sent to the endpoint (tests and operators)."""
        return self.client.sent
