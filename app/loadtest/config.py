"""The settings of one load test, validated; every error names the command-line flag it came from."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# fields whose flag is not ``--`` + the field name with dashes
FLAGS = {"rates": "--rate", "concurrencies": "--concurrency", "json_out": "--json", "plot_out": "--plot", "progress": "--no-progress"}


def flag(field: str) -> str:
    return FLAGS.get(field, "--" + field.replace("_", "-"))


def _split(v):
    """``"1,2.5"`` -> ``["1", "2.5"]``; a list or None as it is."""
    if isinstance(v, str):
        return [p.strip() for p in v.split(",") if p.strip()]
    return v


class LoadTestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field("http://127.0.0.1:8000", description="base URL of the OpenAI-compatible endpoint")
    input: Path = Field(description="JSONL of {'prompt': ...} or {'messages': [...]} lines")
    limit: int | None = Field(None, ge=1, description="use the first N requests of the shuffled mix")
    seed: int = Field(0, description="shuffle of the mix and Poisson arrivals")
    skip_invalid: bool = False
    max_tokens: int = Field(64, ge=1, le=32768)
    rates: list[float] | None = Field(None, description="open loop: Poisson arrivals per second, one level each")
    concurrencies: list[int] | None = Field(None, description="closed loop: requests in flight, one level each")
    requests: int = Field(100, ge=1, description="requests per load level and arm")
    duration: float = Field(60.0, gt=0, description="seconds of sending per load level and arm")
    max_outstanding: int = Field(256, ge=1, description="open loop: arrivals past this many in flight are dropped")
    stream: bool = False
    model: str = Field("auto", min_length=1)
    compare: bool = False
    cascade: bool = Field(False, description="with compare: a third arm, the endpoint's cascade (no opt-out header)")
    tier2_model: str | None = Field(None, min_length=1)
    timeout: float = Field(120.0, gt=0, description="seconds one request may take")
    warmup: int = Field(2, ge=0, description="requests sent one at a time before each arm, not counted")
    api_key: str | None = None
    json_out: Path | None = None
    plot_out: Path | None = None
    progress: bool = True
    route_capacity: bool = False
    route_concurrency: int = Field(32, ge=1)
    route_requests: int = Field(500, ge=1)
    route_rounds: int = Field(2, ge=1, description="interleaved /healthz, /v1/route rounds; figures are medians")
    router_cores: float | None = Field(None, gt=0, description="CPU cores of the ingress+embedder (default: host cores)")

    @field_validator("rates", "concurrencies", mode="before")
    @classmethod
    def _comma_list(cls, v):
        return _split(v)

    @field_validator("rates")
    @classmethod
    def _positive_rates(cls, v):
        if v is not None and (not v or any(r <= 0 for r in v)):
            raise ValueError("give one or more rates > 0 (requests per second), comma-separated")
        return v

    @field_validator("concurrencies")
    @classmethod
    def _positive_concurrencies(cls, v):
        if v is not None and (not v or any(c < 1 for c in v)):
            raise ValueError("give one or more concurrencies >= 1, comma-separated")
        return v

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str):
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"{v!r}: give an http:// or https:// URL")
        v = v.rstrip("/")
        return v[: -len("/v1")] if v.endswith("/v1") else v

    @field_validator("input")
    @classmethod
    def _exists(cls, v: Path):
        if not v.is_file():
            raise ValueError(f"{v}: no such file")
        return v

    @field_validator("plot_out")
    @classmethod
    def _png(cls, v):
        if v is not None and v.suffix.lower() != ".png":
            raise ValueError(f"{v}: the plot is a PNG; give a path ending in .png")
        return v

    @model_validator(mode="after")
    def _one_mode(self):
        if self.rates is not None and self.concurrencies is not None:
            raise ValueError("give one of --rate (open loop) or --concurrency (closed loop), not both")
        if self.rates is None and self.concurrencies is None and not self.route_capacity:
            raise ValueError("give --rate (open loop) or --concurrency (closed loop), or --route-capacity alone")
        if not self.levels and (self.compare or self.plot_out is not None):
            raise ValueError(f"{'--compare' if self.compare else '--plot'} needs load levels: give --rate or --concurrency")
        if self.cascade and not self.compare:
            raise ValueError("--cascade is the cascade arm of --compare; add --compare")
        if self.tier2_model is not None and not self.compare:
            raise ValueError("--tier2-model is the all-tier-2 arm of --compare; add --compare")
        if self.compare and self.tier2_model is not None and self.tier2_model == self.model:
            raise ValueError(f"--compare: --tier2-model and --model are both {self.model!r}; the routed arm needs the router's name")
        return self

    @property
    def loop(self) -> Literal["open", "closed"]:
        return "open" if self.rates is not None else "closed"

    @property
    def levels(self) -> list[float]:
        """The load levels; none when only the router's capacity is measured."""
        return list(self.rates if self.rates is not None else self.concurrencies or [])


def make_config(**fields) -> LoadTestConfig:
    """The config, or ValueError naming the flag of the first invalid field."""
    try:
        return LoadTestConfig(**fields)
    except ValidationError as e:
        err = e.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        loc = err["loc"]
        if not loc:  # a check across fields: its message names the flags
            raise ValueError(msg) from None
        raise ValueError(f"{flag(str(loc[0]))}: {msg}") from None
