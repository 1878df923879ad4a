"""Open-loop arrival times: a Poisson process, reproducible from a seed."""

from __future__ import annotations

import numpy as np


def poisson_arrivals(rate: float, n: int, duration: float | None, seed: int) -> np.ndarray:
    """Up to ``n`` arrival times in seconds from 0 with exponential gaps of mean ``1/rate``, those before ``duration``.

    The times depend on ``(rate, n, seed)`` alone, never on how fast the server answers: the load is open loop.
    """
    if rate <= 0 or n < 1:
        raise ValueError("rate must be > 0 and n >= 1")
    times = np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate, size=n))
    return times if duration is None else times[times < duration]
