import numpy as np
import pytest

from app.calibration.metrics import (
    RANDOM_SEEDS,
    apgr,
    bootstrap,
    cost_ratio,
    cpt,
    curve,
    format_lift,
    length_scores,
    lift_interval,
    mean_lift_interval,
    random_baseline,
    random_scores,
    routed_performance,
    summarize,
)

# 4 prompts: weak right on 0,1; strong right on 0,1,2,3. Gap recovered by routing 2,3.
WEAK = np.array([1, 1, 0, 0])
STRONG = np.array([1, 1, 1, 1])


def test_routed_performance_counts_ties_as_strong():
    assert routed_performance([0.1, 0.2, 0.3, 0.4], WEAK, STRONG, 0.3) == (0.5, 1.0)


def test_oracle_router_curve_and_apgr_by_hand():
    c = curve([0.1, 0.2, 0.9, 0.8], WEAK, STRONG, n_bins=4)
    # quantile edges 0.1, 0.175, 0.5, 0.825, 0.9 (+ above max): 0.825 and 0.9 both give 25 %
    assert c.strong_share.tolist() == [0.0, 0.25, 0.25, 0.5, 0.75, 1.0]
    assert c.performance.tolist() == [0.5, 0.75, 0.75, 1.0, 1.0, 1.0]
    # area = trapezoids: .25*(.5+.75)/2 + .25*(.75+1)/2 + .5*1 = 0.875; APGR = (0.875-0.5)/(1-0.5)
    assert apgr(c) == pytest.approx(0.75)
    assert cpt(c, 0.5) == pytest.approx(0.25)
    assert cpt(c, 0.8) == pytest.approx(0.25 + 0.25 * (0.8 - 0.5) / 0.5)


def test_reversed_router_is_worst():
    c = curve([0.9, 0.8, 0.1, 0.2], WEAK, STRONG, n_bins=4)
    # 0% -> .5, 25% -> .5, 50% -> .5, 75% -> .75, 100% -> 1: area .125+.125+.15625+.21875=.625
    assert apgr(c) == pytest.approx(0.25)
    assert cpt(c, 0.5) == pytest.approx(0.75)


def test_random_router_is_near_half_on_average():
    rng = np.random.default_rng(1)
    w = rng.random(2000) < 0.6
    g = w | (rng.random(2000) < 0.5)
    vals = [summarize(rng.random(2000), w, g)["apgr"] for _ in range(10)]
    assert 0.45 < np.mean(vals) < 0.55


def test_apgr_undefined_without_gap_and_shape_checked():
    with pytest.raises(ValueError):
        apgr(curve([0.1, 0.2], [1, 1], [1, 1]))
    with pytest.raises(ValueError):
        curve([0.1], [1, 0], [1, 1])


def test_length_baseline_and_cost():
    assert length_scores(["a", "abc"]).tolist() == [1.0, 3.0]
    assert cost_ratio(0.15, 1.0, 10.0) == pytest.approx((0.15 * 10 + 0.85) / 10)
    assert cost_ratio(1.0, 1.0, 10.0) == 1.0


def test_lift_interval_is_paired_and_brackets_the_lift():
    rng = np.random.default_rng(0)
    n = 600
    needs = rng.random(n) < 0.3
    weak, strong = (~needs).astype(float), np.ones(n)
    good = needs + rng.normal(0, 0.3, n)  # knows which prompts need the strong model
    noise = rng.random(n)
    r = lift_interval(good, noise, weak, strong, n_boot=300)
    assert r["low"] <= r["lift"] <= r["high"] and r["low"] > 0.2 and r["level"] == 0.9
    assert r["lift"] == pytest.approx(summarize(good, weak, strong)["apgr"] - summarize(noise, weak, strong)["apgr"])
    same = lift_interval(good, good, weak, strong, n_boot=100)  # paired: a router against itself is exactly 0
    assert same["low"] == same["high"] == same["lift"] == 0.0


def test_format_lift_signs_every_figure():
    assert format_lift({"lift": 0.0621, "low": -0.0394, "high": 0.0805, "level": 0.9}) == "+0.062 [-0.039, +0.081]"


def test_mean_lift_interval_averages_paired_lifts():
    rng = np.random.default_rng(1)
    n = 400
    needs = rng.random(n) < 0.3
    weak, strong = (~needs).astype(float), np.ones(n)
    good, fair, noise = needs + rng.normal(0, 0.3, n), needs + rng.normal(0, 1.0, n), rng.random(n)
    lengthish = rng.random(n)
    r = mean_lift_interval([good, fair], [noise, lengthish], weak, strong, n_boot=200)
    apgr = lambda s: summarize(s, weak, strong)["apgr"]  # noqa: E731
    assert r["lift"] == pytest.approx(((apgr(good) - apgr(noise)) + (apgr(fair) - apgr(lengthish))) / 2)
    assert r["low"] <= r["lift"] <= r["high"]
    one = mean_lift_interval([good], [noise], weak, strong, n_boot=200)
    assert one == lift_interval(good, noise, weak, strong, n_boot=200)
    with pytest.raises(ValueError, match="same length"):
        mean_lift_interval([good, fair], [noise], weak, strong)
    with pytest.raises(ValueError, match="1-D arrays of the same"):
        mean_lift_interval([good], [noise[:-1]], weak, strong)


def test_random_baseline_is_the_mean_over_the_shared_seeds():
    weak, strong = np.array([0.0, 1.0] * 50), np.ones(100)
    expected = np.mean([summarize(random_scores(100, s), weak, strong)["apgr"] for s in RANDOM_SEEDS])
    assert random_baseline(weak, strong)["apgr"] == pytest.approx(expected)
    assert 0.4 < expected < 0.6


def test_bootstrap_drops_none_and_is_reproducible():
    a = bootstrap(50, lambda i: None if i[0] % 2 else float(i.mean()), 200, seed=3)
    b = bootstrap(50, lambda i: None if i[0] % 2 else float(i.mean()), 200, seed=3)
    assert 0 < len(a) < 200 and np.array_equal(a, b)
