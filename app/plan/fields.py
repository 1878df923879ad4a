"""The planner config's building blocks: a strict model (unknown fields are errors naming them) and a Spread."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Spread(Strict):
    """A positive quantity drawn from a lognormal with this mean and 95th percentile (p95 > mean)."""

    mean: float = Field(gt=0)
    p95: float = Field(gt=0)

    @model_validator(mode="after")
    def _shape(self):
        ratio = self.p95 / self.mean
        if ratio <= 1.0:
            raise ValueError(f"p95 ({self.p95}) must be above the mean ({self.mean})")
        if ratio > 3.86:  # ln(p95/mean) = 1.645 s - s^2/2 has a real root only up to exp(1.645^2/2)
            raise ValueError(f"p95/mean = {ratio:.2f}: a lognormal allows at most 3.86; use an empirical traffic file")
        return self
