"""Hold a target tier-2 share on live traffic by moving the threshold.

The artifact's threshold was set on some traffic (the calibration mix, or the
user's own with ``tierroute calibrate --traffic``). When live traffic differs,
or drifts, the same threshold sends another share to tier 2. The controller
keeps a sliding window of recent complexity scores. Until it holds ``warmup``
scores the artifact's threshold is used; then the threshold starts at the
window's (1 - share) quantile and follows the traffic by stochastic
approximation of that quantile: after each decision it moves up by
``smoothing * spread * (1 - share)`` if the request went to tier 2, down by
``smoothing * spread * share`` if not (``spread``: the window's interquartile
range, at least 0.05). At equilibrium exactly ``share`` of requests go to tier
2; unlike re-reading the window's quantile, this does not lag drift by half a
window. Steps are small and the threshold is bounded by configured limits, so
a burst of odd requests cannot swing it. No Ray, no I/O: the serving graph
owns one per ingress replica.

:class:`LadderShareController` does the same for a ladder of N tiers
(:mod:`app.routing.ladder`): ``target_shares`` holds one share per tier, and
each boundary k holds its own threshold so that, of the requests that reach it,
``target_shares[k] / sum(target_shares[k:])`` stop at tier k. Warm-up starts the
thresholds at :func:`app.routing.ladder.thresholds_for_shares` of the window;
then every boundary a request reached takes the step above (down by
``step * (1 - f)`` if the request stopped there, up by ``step * f`` if it
climbed), with ``spread`` per boundary.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.routing.ladder import final_tier, thresholds_for_shares


class ControllerConfig(BaseModel):
    """An optional controller of the tier-2 share (off unless ``enabled``)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    target_tier2_share: float = Field(0.15, gt=0, lt=1, description="the share of routed requests to send to tier 2")
    window: int = Field(2000, ge=50, le=1_000_000, description="recent scores the quantile is taken over")
    warmup: int = Field(200, ge=10, description="scores seen before the controller moves the threshold")
    smoothing: float = Field(0.05, gt=0, le=1, description="step size per decision, in units of the window's score spread")
    min_threshold: float = Field(0.0, ge=0, le=1, description="never below this")
    max_threshold: float = Field(1.0, ge=0, le=1, description="never above this")
    target_shares: list[float] | None = Field(
        None, description="a ladder's share of routed requests per tier, cheapest first (one per tier, summing to 1)"
    )

    @field_validator("target_shares")
    @classmethod
    def _shares(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if len(v) < 2:
            raise ValueError(f"one share per tier of the ladder (at least 2), got {v}")
        if any(not 0 <= x <= 1 for x in v):
            raise ValueError(f"each share must lie in [0, 1], got {v}")
        if abs(sum(v) - 1) > 1e-6:
            raise ValueError(f"the shares must sum to 1, got {v} (sum {sum(v):.6g})")
        return v

    @model_validator(mode="after")
    def _bounds(self):
        if self.min_threshold > self.max_threshold:
            raise ValueError("min_threshold must be <= max_threshold")
        if self.warmup > self.window:
            raise ValueError("warmup must be <= window")
        return self


class ShareController:
    """Threshold that holds ``target_tier2_share`` of the last ``window`` scores at or above it."""

    SPREAD_EVERY = 50  # decisions between recomputations of the window's spread
    MIN_SPREAD = 0.05

    def __init__(self, config: ControllerConfig, initial_threshold: float):
        self.config = config
        self.scores: deque[float] = deque(maxlen=config.window)
        self.threshold = float(np.clip(initial_threshold, config.min_threshold, config.max_threshold))
        self.spread = self.MIN_SPREAD
        self.decisions = 0
        self.started = False  # past warm-up: the threshold is the controller's

    @property
    def warm(self) -> bool:
        return len(self.scores) >= self.config.warmup

    def _clip(self, t: float) -> float:
        return float(np.clip(t, self.config.min_threshold, self.config.max_threshold))

    def observe(self, score: float) -> None:
        """Record one decision's score (routed with the threshold before this call moves it)."""
        used = self.threshold
        self.scores.append(float(score))
        self.decisions += 1
        if not self.warm:
            return
        share = self.config.target_tier2_share
        if not self.started or self.decisions % self.SPREAD_EVERY == 0:
            window = np.fromiter(self.scores, float)
            q25, q75, aim = np.quantile(window, [0.25, 0.75, 1.0 - share])
            self.spread = max(float(q75 - q25), self.MIN_SPREAD)
            if not self.started:  # warm from now on: start at the window's quantile
                self.started = True
                self.threshold = self._clip(aim)
                return
        step = self.config.smoothing * self.spread
        self.threshold = self._clip(self.threshold + step * ((1.0 - share) if score >= used else -share))

    def state(self) -> dict[str, float | int | bool]:
        """For /v1/route responses and logs."""
        window = np.fromiter(self.scores, float)
        return {
            "threshold": round(self.threshold, 6),
            "target_tier2_share": self.config.target_tier2_share,
            "window_tier2_share": float((window >= self.threshold).mean()) if len(window) else None,
            "window": len(window),
            "warm": self.warm,
        }


class LadderShareController:
    """Thresholds, one per boundary of a ladder, that hold ``target_shares`` (one per tier) of recent requests
    at each tier (see the module); ``observe`` each decision's per-boundary scores."""

    SPREAD_EVERY = ShareController.SPREAD_EVERY
    MIN_SPREAD = ShareController.MIN_SPREAD

    def __init__(self, config: ControllerConfig, initial_thresholds):
        if config.target_shares is None:
            raise ValueError("controller.target_shares: a ladder's controller needs one target share per tier")
        t = np.asarray(initial_thresholds, dtype=float)
        if len(config.target_shares) != len(t) + 1:
            raise ValueError(f"controller.target_shares: {len(config.target_shares)} shares for a ladder of {len(t) + 1} tiers")
        self.config = config
        self.target = np.asarray(config.target_shares, dtype=float)
        rest = np.cumsum(self.target[::-1])[::-1][:-1]  # sum(target[k:]) per boundary
        self.stop_share = np.divide(self.target[:-1], rest, out=np.ones(len(t)), where=rest > 0)
        self.scores: deque[np.ndarray] = deque(maxlen=config.window)
        self.thresholds = self._clip(t)
        self.spread = np.full(len(t), self.MIN_SPREAD)
        self.decisions = 0
        self.started = False  # past warm-up: the thresholds are the controller's

    @property
    def warm(self) -> bool:
        return len(self.scores) >= self.config.warmup

    def _clip(self, t: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(t, dtype=float), self.config.min_threshold, self.config.max_threshold)

    def observe(self, scores_row) -> None:
        """Record one decision's per-boundary scores (routed with the thresholds before this call moves them)."""
        row = np.asarray(scores_row, dtype=float)
        used = self.thresholds.copy()
        self.scores.append(row)
        self.decisions += 1
        if not self.warm:
            return
        if not self.started or self.decisions % self.SPREAD_EVERY == 0:
            window = np.stack(self.scores)
            q25, q75 = np.quantile(window, [0.25, 0.75], axis=0)
            self.spread = np.maximum(q75 - q25, self.MIN_SPREAD)
            if not self.started:  # warm from now on: start at the window's quantiles
                self.started = True
                self.thresholds = self._clip(thresholds_for_shares(window, self.target))
                return
        step = self.config.smoothing * self.spread
        t = self.thresholds.copy()
        for k, f in enumerate(self.stop_share):
            stopped = row[k] < used[k]
            t[k] += step[k] * (-(1.0 - f) if stopped else f)
            if stopped:
                break  # the boundaries above never saw this request
        self.thresholds = self._clip(t)

    def state(self) -> dict:
        """For responses and logs."""
        window = np.stack(self.scores) if self.scores else np.zeros((0, len(self.thresholds)))
        shares = np.bincount(final_tier(window, self.thresholds), minlength=len(self.target)) / len(window) if len(window) else None
        return {
            "thresholds": [round(float(x), 6) for x in self.thresholds],
            "target_shares": list(self.config.target_shares),
            "window_shares": None if shares is None else [round(float(x), 4) for x in shares],
            "window": len(window),
            "warm": self.warm,
        }
