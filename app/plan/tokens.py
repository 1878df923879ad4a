"""Token counts of requests: a lognormal from (mean, p95), or the empirical counts of a traffic file."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from app.plan.config import Spread

Z95 = 1.6448536269514722


def lognormal_params(mean: float, p95: float) -> tuple[float, float]:
    """(mu, sigma) of the lognormal with this mean and 95th percentile (the smaller sigma of the two roots)."""
    d = math.log(p95 / mean)  # = Z95 * s - s^2 / 2
    disc = Z95 * Z95 - 2.0 * d
    if d <= 0 or disc < 0:
        raise ValueError(f"no lognormal has mean {mean} and p95 {p95}")
    s = Z95 - math.sqrt(disc)
    return math.log(mean) - s * s / 2.0, s


@dataclass(frozen=True)
class TokenDist:
    """Draws integer token counts >= 1, capped at ``cap``: lognormal(mean, p95) or resampled from ``values``."""

    mean: float | None = None
    p95: float | None = None
    values: tuple[int, ...] | None = None
    cap: int | None = None

    @classmethod
    def from_spread(cls, s: Spread, cap: int | None = None) -> "TokenDist":
        return cls(mean=s.mean, p95=s.p95, cap=cap)

    @classmethod
    def empirical(cls, values, cap: int | None = None) -> "TokenDist":
        vals = tuple(int(max(1, v)) for v in values)
        if not vals:
            raise ValueError("an empirical token distribution needs at least one value")
        return cls(values=vals, cap=cap)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.values is not None:
            out = rng.choice(np.asarray(self.values), size=n)
        else:
            mu, s = lognormal_params(self.mean, self.p95)
            out = np.rint(rng.lognormal(mu, s, size=n))
        out = np.maximum(out, 1)
        if self.cap is not None:
            out = np.minimum(out, self.cap)
        return out.astype(np.int64)

    def expected(self) -> float:
        """Mean of the distribution as drawn (with the cap and the floor of 1), estimated once on a fixed sample."""
        return float(self.sample(np.random.default_rng(12345), 200_000).mean())

    def describe(self) -> str:
        if self.values is not None:
            v = np.asarray(self.values)
            return f"empirical n={len(v)} mean {v.mean():.0f} p95 {np.percentile(v, 95):.0f}"
        return f"lognormal mean {self.mean:g} p95 {self.p95:g}"


def prompt_tokens_from_texts(texts: list[str], chars_per_token: float) -> list[int]:
    """A token estimate per prompt: characters / chars_per_token (no tokenizer needed offline)."""
    return [max(1, round(len(t) / chars_per_token)) for t in texts]
