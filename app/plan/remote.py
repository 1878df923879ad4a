"""Remote tiers in the planner: a hosted OpenAI-compatible endpoint priced per token, with no nodes to size.

Cost: a month of the tier's *mean* traffic (nodes are sized for the peak; tokens are paid as they are used) x
(mean prompt tokens x input price + mean output tokens x output price) per 1M tokens. In the cascade modes the
tier's request rate already counts escalated requests on tier 1, so their tier-1 tokens are paid on tier 1 too.

Latency (the simulation): no queue of ours; a request's first token comes ``ttft`` after it reaches the tier and
every later token ``tpot`` after the one before, both drawn per request from the tier's Spread (lognormal) or
fixed. The provider's own queueing is in those figures: take them from your measurements at your load.

Rate limits: the demand at the peak (and at the mean) in requests and tokens per minute against the limit; past
it, the share over the limit is what would be throttled (429s) in a steady minute: 1 - limit / demand, the larger
of the two limits' shares. Bursts within a minute are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from app.plan.config import HOURS_PER_MONTH, Remote, Spread
from app.plan.tokens import lognormal_params

SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600.0


def monthly_usd(remote: Remote, mean_rps: float, mean_prompt: float, mean_output: float) -> float:
    """Tokens of a month of ``mean_rps`` requests x the tier's prices."""
    per_request = (mean_prompt * remote.input_usd_per_1m + mean_output * remote.output_usd_per_1m) / 1e6
    return mean_rps * SECONDS_PER_MONTH * per_request


def throttled_share(remote: Remote, rps: float, mean_prompt: float, mean_output: float) -> dict:
    """Demand per minute at ``rps`` against the tier's rate limit, and the share of requests over it."""
    rpm, tpm = rps * 60.0, rps * 60.0 * (mean_prompt + mean_output)
    out = {"requests_per_minute": rpm, "tokens_per_minute": tpm, "throttled_share": 0.0}
    lim = remote.rate_limit
    if lim is None:
        return out
    shares = [1.0 - limit / demand for limit, demand in ((lim.requests_per_minute, rpm), (lim.tokens_per_minute, tpm)) if limit and demand > limit]
    out["throttled_share"] = max(shares, default=0.0)
    return out


@dataclass
class RemoteSize:
    """A remote tier in a topology: its rate, its cost per token, what its rate limit would throttle; no nodes."""

    remote: Remote
    rate: float  # requests/s at the peak
    mean_rate: float  # requests/s on average (what the month's tokens are)
    mean_prompt: float
    mean_output: float
    replicas: int = 0
    nodes: int = 0
    fit: None = None
    feasible: bool = True
    reason: str = "remote: priced per token"
    observed: dict = field(default_factory=dict)

    @property
    def monthly_usd(self) -> float:
        return monthly_usd(self.remote, self.mean_rate, self.mean_prompt, self.mean_output)

    def to_dict(self) -> dict:
        r = self.remote
        month = self.mean_rate * SECONDS_PER_MONTH
        return {
            "remote": True, "model": r.model, "rate_rps": self.rate, "mean_rate_rps": self.mean_rate,
            "input_usd_per_1m": r.input_usd_per_1m, "output_usd_per_1m": r.output_usd_per_1m,
            "input_tokens_per_month": month * self.mean_prompt, "output_tokens_per_month": month * self.mean_output,
            "replicas": 0, "nodes": 0, "monthly_usd": self.monthly_usd, "feasible": True, "reason": self.reason,
            "rate_limit": r.rate_limit.model_dump() if r.rate_limit else None,
            "at_peak": throttled_share(r, self.rate, self.mean_prompt, self.mean_output),
            "at_mean": throttled_share(r, self.mean_rate, self.mean_prompt, self.mean_output),
            "observed_at_slo_percentile": self.observed,
        }  # fmt: skip


def _draw(x: Spread | float, rng: np.random.Generator, n: int) -> np.ndarray:
    if isinstance(x, Spread):
        mu, s = lognormal_params(x.mean, x.p95)
        return rng.lognormal(mu, s, size=n)
    return np.full(n, float(x))


@dataclass
class RemotePool:
    """The simulation's view of a remote tier: per-request time to first token and per-token time, no queue."""

    remote: Remote
    seed: int = 0

    def draws(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(ttft, tpot) per workload entry; the same seed gives the same draws (common random numbers)."""
        rng = np.random.default_rng(self.seed + 4099)
        return _draw(self.remote.ttft_s, rng, n), _draw(self.remote.tpot_s, rng, n)
