"""The tier-2 share controller on synthetic score streams whose distribution drifts."""

import numpy as np
import pytest
from pydantic import ValidationError

from app.routing.controller import ControllerConfig, ShareController


def routed_with(ctrl: ShareController, score: float) -> float:
    """The threshold a decision of ``score`` is routed with (the controller's before it observes the score)."""
    used = ctrl.threshold
    ctrl.observe(score)
    return used


def realised_share(ctrl: ShareController, scores: np.ndarray) -> np.ndarray:
    """1 where the score was routed to tier 2 with the threshold the controller gave for it."""
    return np.array([s >= routed_with(ctrl, s) for s in scores], dtype=float)


def drifting_stream(n: int, seed: int = 0) -> np.ndarray:
    """Scores whose distribution moves: Beta(2, 5) -> Beta(5, 2) in a ramp over 60%, then a sudden jump down."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n)
    a = np.where(t < 0.6, 2 + 3 * t / 0.6, 1.5)
    b = np.where(t < 0.6, 5 - 3 * t / 0.6, 6.0)
    return rng.beta(a, b)


@pytest.mark.parametrize("target", [0.05, 0.15, 0.4])
def test_holds_target_share_within_two_points_under_drift(target):
    cfg = ControllerConfig(enabled=True, target_tier2_share=target, window=1000, warmup=200)
    ctrl = ShareController(cfg, initial_threshold=0.9)
    scores = drifting_stream(30_000)  # ramp over 0..18,000, jump at 18,000
    routed = realised_share(ctrl, scores)
    window, jump = cfg.window, 18_000
    # every stretch of 2,000 decisions after the first window: through the ramp, and again one window after the jump
    starts = [*range(window, jump - 2000 + 1, 500), *range(jump + window, len(scores) - 2000 + 1, 500)]
    shares = [routed[i : i + 2000].mean() for i in starts]
    assert max(abs(s - target) for s in shares) <= 0.02, shares


def test_a_fixed_threshold_misses_the_target_on_the_same_stream():
    """The same drift moves a fixed threshold's share far from 15%: what the controller is for."""
    scores = drifting_stream(30_000)
    fixed = np.quantile(scores[:2000], 0.85)
    late = (scores[15_000:17_000] >= fixed).mean()
    assert abs(late - 0.15) > 0.2


def test_threshold_stays_within_limits_and_moves_smoothly():
    cfg = ControllerConfig(enabled=True, target_tier2_share=0.5, window=200, warmup=50, min_threshold=0.3, max_threshold=0.6)
    ctrl = ShareController(cfg, initial_threshold=0.5)
    used = [routed_with(ctrl, s) for s in np.full(500, 0.95)]  # all scores far above the limit
    assert max(used) <= 0.6 + 1e-12 and ctrl.threshold == pytest.approx(0.6, abs=1e-3)
    assert np.max(np.abs(np.diff(used[60:]))) <= cfg.smoothing + 1e-12  # after warm-up, small steps (spread <= 1)
    for s in np.full(2000, 0.01):
        ctrl.observe(s)
    assert ctrl.threshold == pytest.approx(0.3, abs=1e-3)


def test_before_warmup_the_artifact_threshold_is_used():
    ctrl = ShareController(ControllerConfig(enabled=True, warmup=100, window=100), initial_threshold=0.42)  # window == warmup
    used = [routed_with(ctrl, s) for s in np.linspace(0, 1, 99)]
    assert set(used) == {0.42} and not ctrl.warm
    ctrl.observe(0.5)
    assert ctrl.warm and routed_with(ctrl, 0.5) != 0.42
    st = ctrl.state()
    window = np.append(np.linspace(0, 1, 99), [0.5, 0.5])[-100:]  # the last 100 scores it saw
    assert st["warm"] and st["window"] == 100 and st["window_tier2_share"] == float((window >= ctrl.threshold).mean())
    # a full window keeps following the traffic instead of restarting at the window's quantile
    routed = [s >= routed_with(ctrl, s) for s in np.random.default_rng(1).random(4000)]
    assert abs(np.mean(routed[1000:]) - 0.15) <= 0.02


def test_config_is_validated_naming_the_field():
    with pytest.raises(ValidationError, match="target_tier2_share"):
        ControllerConfig(target_tier2_share=1.5)
    with pytest.raises(ValidationError, match="min_threshold"):
        ControllerConfig(min_threshold=0.8, max_threshold=0.2)
    with pytest.raises(ValidationError, match="warmup"):
        ControllerConfig(window=100, warmup=500)
