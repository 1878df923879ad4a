"""Awaiting a Ray Serve call with a bound (no Ray import: anything awaitable with a ``cancel``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def within(call: Awaitable[T], timeout_s: float | None, cancel: Callable[[], None] | None = None) -> T:
    """``await call`` for at most ``timeout_s`` seconds (None: no bound; 0: only if already done).

    When the call is given up on, because the bound passed (``asyncio.TimeoutError``) or the awaiting
    task was cancelled, the call is cancelled too (``cancel``, default ``call.cancel``): Serve cancels
    it on its replica, where vLLM aborts the engine request and frees its slot.
    """
    try:
        return await asyncio.wait_for(call, timeout_s)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        (cancel or call.cancel)()
        raise
