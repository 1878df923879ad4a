"""A remote tier's config in the planner: a hosted OpenAI-compatible endpoint's prices, latency and rate limit."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from app.plan.fields import Spread, Strict
from app.validation import describe


class RateLimit(Strict):
    """A remote endpoint's limits; past them the plan counts what would be throttled (see remote.py)."""

    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0, description="input + output tokens")

    @model_validator(mode="after")
    def _some(self):
        if self.requests_per_minute is None and self.tokens_per_minute is None:
            raise ValueError("set requests_per_minute and/or tokens_per_minute")
        return self


class Remote(Strict):
    """A hosted OpenAI-compatible endpoint: priced per token, no nodes. Latency as the router sees it: a Spread
    (lognormal, drawn per request) or a fixed figure, in seconds; tpot_s is drawn once per request."""

    model: str = Field(min_length=1)
    input_usd_per_1m: float = Field(ge=0, description="list price per 1M input (prompt) tokens")
    output_usd_per_1m: float = Field(ge=0, description="list price per 1M output tokens")
    ttft_s: Spread | float = Field(description="time to first token: {mean, p95} or a fixed figure")
    tpot_s: Spread | float = Field(description="time per output token after the first: {mean, p95} or a fixed figure")
    rate_limit: RateLimit | None = None

    @field_validator("ttft_s", "tpot_s", mode="before")
    @classmethod
    def _latency(cls, v: Any):
        """A mapping is a Spread, a number a fixed figure > 0: one plain message either way."""
        if isinstance(v, dict):
            try:
                return Spread.model_validate(v)
            except ValidationError as e:
                raise ValueError(describe(e).removeprefix("Value error, ")) from None
        if isinstance(v, Spread):
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise ValueError(f"expected seconds > 0 or {{mean, p95}}, got {v!r}")
        return float(v)
