"""One load level of one arm: open loop at a Poisson rate or closed loop at a concurrency, bounded.

Bounds: at most ``requests`` requests, none sent after ``duration`` seconds, each given up after ``timeout``;
so a level ends within ``duration + timeout`` seconds.
Open loop stays open: arrivals are sent at their scheduled times whatever is still in flight; one that finds
``max_outstanding`` requests in flight is dropped and counted, not delayed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from app.loadtest.client import Outcome, send
from app.loadtest.schedule import poisson_arrivals


@dataclass
class LevelRun:
    arm: str
    loop: str  # open | closed
    load: float  # requests/s (open) or concurrency (closed)
    outcomes: list[Outcome] = field(default_factory=list)
    dropped: int = 0
    wall_s: float = 0.0  # first send -> last answer


async def open_loop(
    client: httpx.AsyncClient, bodies: Callable[[int], dict], rate: float, requests: int, duration: float,
    timeout: float, max_outstanding: int, seed: int, arm: str = "", on_done: Callable[[], None] | None = None,
    headers: dict | None = None,
) -> LevelRun:  # fmt: skip
    run = LevelRun(arm, "open", rate)
    arrivals = poisson_arrivals(rate, requests, duration, seed)
    in_flight: set[asyncio.Task] = set()
    tasks: list[asyncio.Task] = []
    start = time.perf_counter()

    def finished(t: asyncio.Task) -> None:
        in_flight.discard(t)
        if on_done:
            on_done()

    for i, at in enumerate(arrivals):
        due = start + float(at)
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) >= max_outstanding:
            run.dropped += 1
            if on_done:
                on_done()
            continue
        t = asyncio.create_task(send(client, bodies(i), i, due, start, timeout, headers))
        in_flight.add(t)
        t.add_done_callback(finished)
        tasks.append(t)
    run.outcomes = list(await asyncio.gather(*tasks))
    run.wall_s = _wall(run.outcomes, start, time.perf_counter())
    return run


async def closed_loop(
    client: httpx.AsyncClient, bodies: Callable[[int], dict], concurrency: int, requests: int, duration: float,
    timeout: float, arm: str = "", on_done: Callable[[], None] | None = None, headers: dict | None = None,
) -> LevelRun:  # fmt: skip
    run = LevelRun(arm, "closed", concurrency)
    start = time.perf_counter()
    next_i = 0

    async def worker() -> None:
        nonlocal next_i
        while next_i < requests and time.perf_counter() - start < duration:
            i, next_i = next_i, next_i + 1
            run.outcomes.append(await send(client, bodies(i), i, time.perf_counter(), start, timeout, headers))
            if on_done:
                on_done()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.outcomes.sort(key=lambda o: o.index)
    run.wall_s = _wall(run.outcomes, start, time.perf_counter())
    return run


def _wall(outcomes: list[Outcome], start: float, end: float) -> float:
    """Seconds from the level's start to its last answer (at least a microsecond)."""
    return max(end - start, 1e-6) if outcomes else 0.0
