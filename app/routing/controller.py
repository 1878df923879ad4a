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
"""

from __future__ import annotations

from collections import deque

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


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
