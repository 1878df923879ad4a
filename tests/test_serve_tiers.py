"""How a tier call's failures are told apart (unit tests: a test double stands in for the deployment
handle; the real graph's faults are in test_serve_faults.py)."""

import asyncio

import pytest
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError
from ray.serve.llm.openai_api_models import ErrorResponse
from starlette.requests import Request

from app.serve.fallback import TierFailure
from app.serve.errors import APIError
from app.serve.tiers import Tiers


class Call:
    """A DeploymentResponse stand-in: awaitable, cancellable."""

    def __init__(self, coro):
        self.coro, self.cancelled = coro, False

    def __await__(self):
        return self.coro.__await__()

    def cancel(self):
        self.cancelled = True


class Handle:
    def __init__(self, behave):
        self.behave, self.calls = behave, []
        self.chat_once = self.completions_once = self.chat = self.completions = self

    def remote(self, req, info):
        call = Call(self.behave())
        self.calls.append(call)
        return call

    def options(self, stream=False):
        return self


def request():
    return Request({"type": "http", "method": "POST", "path": "/", "headers": [(b"x-request-id", b"rid-1")], "query_string": b""})


def run(behave, timeout_s=0.5):
    handle = Handle(behave)
    tiers = Tiers({1: ("small", handle), 2: ("large", handle)})
    return asyncio.run(tiers.complete(1, "chat", object(), request(), timeout_s)), handle


def error_response(code):
    return ErrorResponse(error={"message": "boom at 10.0.0.7", "type": "X", "code": code})


@pytest.mark.parametrize(
    "exc,cause",
    [(BackPressureError(num_queued_requests=5, max_queued_requests=5), "overloaded"), (RayActorError(), "unavailable"), (RuntimeError("x"), "error")],
)
def test_handle_failures_are_tier_failures_with_a_cause(exc, cause):
    async def behave():
        raise exc

    with pytest.raises(TierFailure) as e:
        run(behave)
    assert e.value.tier == 1 and e.value.cause == cause


def test_a_slow_tier_times_out_and_its_call_is_cancelled():
    async def slow():
        await asyncio.sleep(5)

    handle = Handle(slow)
    tiers = Tiers({1: ("small", handle), 2: ("large", handle)})
    with pytest.raises(TierFailure) as e:
        asyncio.run(tiers.complete(1, "chat", object(), request(), 0.2))
    assert e.value.cause == "timeout" and handle.calls[0].cancelled


def test_engine_server_errors_fail_the_tier_client_errors_are_the_requests():
    async def server():
        return error_response(500)

    with pytest.raises(TierFailure) as e:
        run(server)
    assert e.value.cause == "error"

    async def client():
        return error_response(400)

    with pytest.raises(APIError) as e:
        run(client)
    assert e.value.status == 400


def test_an_answer_passes_through():
    async def ok():
        return {"choices": []}

    resp, handle = run(ok)
    assert resp == {"choices": []} and not handle.calls[0].cancelled
