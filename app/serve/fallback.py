"""Fallback between tiers, without Ray: which tier serves a request whose tier failed.

A tier *fails* a request when its engine answers a server error, when it has not answered (a stream:
sent its first chunk) within ``fallback.tier_timeout_s``, when its queue is full, or when it has no
healthy replica (:class:`TierFailure`, raised by :mod:`app.serve.tiers`). A client error (4xx from
the engine) is the request's fault and is answered as is. Each direction is configured on its own:
tier 2 -> tier 1 on by default (cheaper, keeps answering), tier 1 -> tier 2 off (it costs).
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
    """The tier a request was not sent to (the one fallback and shadow evaluation turn to)."""
    return 2 if tier == 1 else 1


def other_tier(tier: int, cfg: FallbackConfig) -> int | None:
    """The tier that takes over from ``tier``, or None where that direction is off."""
    on = cfg.tier2_to_tier1 if tier == 2 else cfg.tier1_to_tier2
    return other(tier) if on else None
