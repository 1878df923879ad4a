"""Fallback between tiers, without Ray: which tier serves a request whose tier failed.

A tier *fails* a request when its engine answers a server error, when it has not answered (a stream:
sent its first chunk) within ``fallback.tier_timeout_s``, when its queue is full, or when it has no
healthy replica (:class:`TierFailure`, raised by :mod:`app.serve.tiers`). A client error (4xx from
the engine) is the request's fault and is answered as is. The request then walks the ladder
(:func:`fallback_order`): down first, to the cheaper tiers, nearest first (``fallback.down``, on by default:
cheaper, keeps answering), then up, to the stronger ones, nearest first (``fallback.up``, off: it costs).
Two tiers are the ladder's shortest case: tier 2 -> tier 1 (down), tier 1 -> tier 2 (up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from app.serve.config import FallbackConfig

CAUSES = ("error", "timeout", "overloaded", "unavailable")


class TierFailure(Exception):
    """A tier did not serve a request; ``cause`` is one of :data:`CAUSES` (details go to the log).

    ``retry_after_s``: how long the tier said it will refuse (a remote endpoint's 429 Retry-After), else None.
    """

    def __init__(self, tier: int, cause: str, retry_after_s: float | None = None):
        super().__init__(f"tier {tier}: {cause}")
        self.tier, self.cause, self.retry_after_s = tier, cause, retry_after_s

    def retry_after(self, default_s: int) -> int:
        """The Retry-After (whole seconds, at least 1) a client gets when nothing else serves the request."""
        if self.retry_after_s is None:
            return default_s
        return max(1, math.ceil(self.retry_after_s))


@dataclass(frozen=True)
class Fallback:
    """What the response says when another tier served it."""

    from_tier: int
    to_tier: int
    cause: str

    def field(self) -> dict:
        return {"from_tier": self.from_tier, "to_tier": self.to_tier, "cause": self.cause}

    def header(self) -> str:
        return f"tier{self.from_tier}->tier{self.to_tier}; cause={self.cause}"


def other(tier: int) -> int:
    """Of a pair of tiers, the one a request was not sent to (the one shadow evaluation turns to)."""
    return 2 if tier == 1 else 1


def fallback_order(tier: int, n_tiers: int, cfg: FallbackConfig) -> list[int]:
    """The tiers that take over from ``tier`` (1..``n_tiers``), in the order they are tried: the cheaper ones
    nearest first where ``cfg.down``, then the stronger ones nearest first where ``cfg.up``."""
    down = list(range(tier - 1, 0, -1)) if cfg.down else []
    up = list(range(tier + 1, n_tiers + 1)) if cfg.up else []
    return down + up


def other_tier(tier: int, cfg: FallbackConfig, n_tiers: int = 2) -> int | None:
    """The first tier that takes over from ``tier``, or None where no direction is on."""
    order = fallback_order(tier, n_tiers, cfg)
    return order[0] if order else None
