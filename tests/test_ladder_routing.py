"""Serving a ladder of tiers (route mode), without Ray: the serve-time scores equal the offline fit's, the
tier is the lowest judged sufficient, a cascade ladder is refused, the shipped ladder routes real MiniLM
embeddings, and the share controller holds a target share per tier."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from app.calibration.ladder_build import build_ladder
from app.calibration.ladder_data import LadderData, LadderRow
from app.calibration.ladder_eval import SourceInputs, boundary_design, scorer_candidates
from app.calibration.ladder_prices import Price
from app.calibration.verifier_fit import expert_scores, fit_expert
from app.routing.artifact import ArtifactError, EmbedderInfo
from app.routing.controller import ControllerConfig, LadderShareController
from app.routing.ladder import LadderDecision, LadderRouter, final_tier, thresholds_for_shares
from app.routing.ladder_artifact import DEFAULT_LADDER, Boundary, LadderArtifact, Tier, load_ladder_artifact
from app.routing.logit import Logit

TIERS = ["small", "mid", "big"]
DIM = 12


def _synthetic(n: int = 150, seed: int = 0) -> tuple[SourceInputs, np.ndarray]:
    """Prompts of varied length and digits, unit embeddings; the harder (embedding direction 0, more numbers), the
    more the small and mid tiers fail."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, DIM)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    rows = []
    for i in range(n):
        nums = int(rng.integers(0, 6))
        words = " ".join(["then", "each", "word", "total"][j % 4] for j in range(int(rng.integers(3, 40))))
        prompt = f"Q{i}: {words} " + " ".join(str(rng.integers(1, 999)) for _ in range(nums)) + ("?" if i % 2 else ". Why?")
        hard = emb[i, 0] + 0.3 * nums + rng.normal(0, 0.5)
        scores = {"small": float(hard < 0.6), "mid": float(hard < 1.4), "big": float(hard < 2.5)}
        rows.append(LadderRow(id=str(i), prompt=prompt, scores=scores, source="toy"))
    costs = {"small": np.full(n, 1.0), "mid": np.full(n, 3.0), "big": np.full(n, 10.0)}
    return SourceInputs(LadderData(TIERS, rows), costs, emb), emb


PRICES = {"small": Price(input=1, output=1), "mid": Price(input=3, output=3), "big": Price(input=10, output=10)}


@pytest.fixture(scope="module")
def fitted():
    inp, emb = _synthetic()
    art = build_ladder(inp, TIERS, PRICES, "route", [0.5, 0.3, 0.2], n_folds=3, embedder=EmbedderInfo(model_id="toy", dim=DIM))
    return inp, emb, art


def test_serve_time_scores_equal_the_offline_fit_on_the_same_rows(fitted):
    inp, emb, art = fitted
    router = LadderRouter(art)
    prompts = [r.prompt for r in inp.data.rows]
    served = router.scores(prompts, emb)
    rows = np.arange(len(prompts))
    by_name = {c.name: c for c in scorer_candidates("embedding")}
    assert served.shape == (len(prompts), 2)
    for k, b in enumerate(art.boundaries):
        assert b.embedding and b.features  # the row is the prompt's features, then its embedding
        c = by_name[b.candidate]
        d = boundary_design(inp, TIERS, k, "embedding")
        offline = expert_scores(fit_expert(c, d, rows), c, d, rows)  # refitted on every row, as the builder did
        np.testing.assert_allclose(served[:, k], offline, rtol=1e-9, atol=1e-12)
        assert served[:, k].std() > 0.01  # not a constant: the rows differ and the fit reads them
    # one prompt at a time is the same as the batch
    np.testing.assert_allclose(router.scores(prompts[3:4], emb[3]), served[3:4], rtol=1e-12)
    # the card's shares come from the same policy
    assert art.card["on_calibration_rows"]["tier_shares"] == pytest.approx([0.5, 0.3, 0.2], abs=0.02)
    with pytest.raises(ValueError, match="2 prompts but 1 embeddings"):
        router.scores(prompts[:2], emb[:1])
    with pytest.raises(ValueError, match="dimension 5"):
        router.scores(prompts[:1], np.zeros((1, 5)))


def test_decide_picks_the_lowest_tier_judged_sufficient(fitted):
    router = LadderRouter(fitted[2])
    t = [0.4, 0.6]
    assert router.decide([0.1, 0.9], t) == 1  # tier 1 sufficient: the rest is not read
    assert router.decide([0.5, 0.3], t) == 2
    assert router.decide([0.5, 0.7], t) == 3  # none sufficient: the top tier
    assert router.decide([0.4, 0.6], t) == 3  # sufficient iff strictly below the threshold
    assert router.decide([0.0, 0.0], [-1.0, 2.0]) == 2  # -1: always escalate past tier 1; 2: never past tier 2
    assert router.decide([1.0, 1.0], [-1.0, 2.0]) == 2
    assert router.decide([0.99, 0.99], [2.0, -1.0]) == 1
    assert router.decide([0.0, 0.0], [-1.0, -1.0]) == 3
    art_t = fitted[2].thresholds
    assert router.decide(art_t - 1e-6) == 1 and router.decide(art_t + 1e-6) == 3  # default: the artifact's
    d = router.decision([0.5, 0.3], t)
    assert d == LadderDecision(tier=2, tier_name="tier2", model="mid", scores=[0.5, 0.3], thresholds=t)
    np.testing.assert_array_equal(final_tier(np.array([[0.1, 0.9], [0.5, 0.3], [0.5, 0.7]]), t), [0, 1, 2])
    with pytest.raises(ValueError, match="1 thresholds for 2 boundaries"):
        router.decide([0.1, 0.1], [0.5])


def _cascade() -> LadderArtifact:
    logit = Logit(coef=[1.0], intercept=0.0, mean=[0.0], scale=[1.0])
    return LadderArtifact(
        mode="cascade", tiers=[Tier(name=f"tier{i + 1}", model=m, price=PRICES[m]) for i, m in enumerate(TIERS[:2])],
        boundaries=[Boundary(tier="small", above=["mid"], reads="answer", candidate="x", features=["log_chars"], model=logit, threshold=0.5)],
    )  # fmt: skip


def test_a_cascade_ladder_or_one_without_embedder_is_refused_naming_the_field(fitted):
    with pytest.raises(ArtifactError, match=r"field 'mode': 'cascade'.*--ladder-mode route"):
        LadderRouter(_cascade())
    raw = fitted[2].model_dump()
    for b in raw["boundaries"]:  # features only: no embedder needed to validate
        b["embedding"] = False
        b["model"] = {"coef": [0.0] * len(b["features"]), "intercept": 0.0, "mean": [0.0] * len(b["features"]), "scale": [1.0] * len(b["features"])}
    no_emb = LadderArtifact.model_validate(raw | {"embedder": None})
    with pytest.raises(ArtifactError, match="field 'embedder'"):
        LadderRouter(no_emb)
    router = LadderRouter(fitted[2])
    router.check_embedder("toy", DIM)
    with pytest.raises(ArtifactError, match="built with embedding model 'toy' \\(dim 12\\) but the router is using 'other'"):
        router.check_embedder("other", DIM)


@pytest.mark.slow
def test_the_shipped_ladder_routes_real_minilm_embeddings():
    from app.routing.embed import Embedder, EmbedderConfig

    art = load_ladder_artifact()  # the shipped one
    assert DEFAULT_LADDER.stat().st_size < 1_000_000
    assert art.mode == "route" and [t.model for t in art.tiers] == ["llama-3.1-8b", "llama-3.1-70b", "gpt-4o"]
    router = LadderRouter(art)
    emb = Embedder(EmbedderConfig(model=art.embedder.model_id, prefix=art.embedder.prefix))
    router.check_embedder(emb.model_id, emb.dim)
    prompts = [
        "What is 2 + 3?",
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did she sell altogether?",
        "Let $f(x) = x^3 - 3x + 1$. Find the sum of the squares of the real roots of $f(f(x)) = 0$, and prove that your answer is minimal.",
        "def f(s):\n    return ''.join(sorted(s))[::-1]\nassert f(??) == 'cba'",
    ]
    texts = [t for p in prompts for t in router.texts(p)]
    assert texts == prompts  # the prefix is the embedder's to add
    assert router.texts([{"role": "user", "content": "hi"}]) == ["hi"]
    s = router.scores(texts, emb.encode(texts))
    assert s.shape == (4, 2) and ((s > 0) & (s < 1)).all()
    tiers = [router.decide(row) for row in s]
    assert all(t in (1, 2, 3) for t in tiers)
    assert s[0, 0] < s[2, 0]  # the one-line sum needs tier 2 less than the olympiad problem
    d = router.decision(s[2])
    assert d.tier == tiers[2] and d.model == art.tiers[d.tier - 1].model


def _stream(rng, n):
    a = rng.beta(2, 5, size=n)
    return np.stack([a, np.clip(a + rng.normal(0, 0.15, size=n), 0, 1)], axis=1)


def test_ladder_share_controller_holds_the_artifact_thresholds_then_the_target_shares():
    cfg = ControllerConfig(enabled=True, target_shares=[0.5, 0.3, 0.2], window=1000, warmup=200)
    ctl = LadderShareController(cfg, [0.4, 0.6])
    rng = np.random.default_rng(0)
    stream = _stream(rng, 12000)
    used = []
    for i, row in enumerate(stream):
        used.append(ctl.thresholds.copy())
        ctl.observe(row)
        if i < cfg.warmup - 1:
            assert list(ctl.thresholds) == [0.4, 0.6] and not ctl.warm
    tiers = np.array([final_tier(r[None], t)[0] for r, t in zip(stream[-4000:], used[-4000:])])  # each with the thresholds it met
    achieved = np.bincount(tiers, minlength=3) / len(tiers)
    assert achieved == pytest.approx([0.5, 0.3, 0.2], abs=0.02)
    # the artifact's thresholds would have given other shares on this traffic: the controller moved them
    static = np.bincount(final_tier(stream[-4000:], [0.4, 0.6]), minlength=3) / 4000
    assert abs(static[0] - 0.5) > 0.1
    st = ctl.state()
    assert st["warm"] and st["window"] == 1000 and st["target_shares"] == [0.5, 0.3, 0.2] and len(st["thresholds"]) == 2
    assert sum(st["window_shares"]) == pytest.approx(1.0)
    # drift: the traffic gets harder; the shares come back
    harder = np.clip(_stream(rng, 12000) + 0.2, 0, 1)
    used = []
    for row in harder:
        used.append(ctl.thresholds.copy())
        ctl.observe(row)
    tiers = np.array([final_tier(r[None], t)[0] for r, t in zip(harder[-4000:], used[-4000:])])
    assert np.bincount(tiers, minlength=3) / 4000 == pytest.approx([0.5, 0.3, 0.2], abs=0.02)


def test_ladder_share_controller_starts_at_the_window_quantiles_and_keeps_its_bounds():
    cfg = ControllerConfig(enabled=True, target_shares=[0.6, 0.3, 0.1], window=100, warmup=50, min_threshold=0.2, max_threshold=0.9)
    ctl = LadderShareController(cfg, [0.05, 0.95])
    assert list(ctl.thresholds) == [0.2, 0.9]  # clipped to the bounds, like the two-tier controller
    stream = _stream(np.random.default_rng(1), 50)
    for row in stream:
        ctl.observe(row)
    np.testing.assert_allclose(ctl.thresholds, np.clip(thresholds_for_shares(stream, [0.6, 0.3, 0.1]), 0.2, 0.9))
    for _ in range(500):  # a burst of requests that all stop at tier 1: the tier-1 threshold falls, never below the floor
        ctl.observe([0.0, 0.0])
    assert ctl.thresholds[0] == 0.2
    with pytest.raises(ValueError, match="controller.target_shares: 3 shares for a ladder of 2 tiers"):
        LadderShareController(cfg, [0.5])
    with pytest.raises(ValueError, match="controller.target_shares: a ladder's controller needs"):
        LadderShareController(ControllerConfig(), [0.5])


@pytest.mark.parametrize(
    "shares, msg",
    [([1.0], "at least 2"), ([0.5, 0.6], "sum to 1"), ([1.2, -0.2], r"in \[0, 1\]"), ([0.3, 0.3, 0.3], "sum to 1")],
)
def test_controller_config_target_shares_are_validated_naming_the_field(shares, msg):
    with pytest.raises(ValidationError, match=msg) as e:
        ControllerConfig(target_shares=shares)
    assert "target_shares" in str(e.value)
    assert ControllerConfig(target_shares=[0.7, 0.2, 0.1]).target_shares == [0.7, 0.2, 0.1]
    assert ControllerConfig(target_shares=[0.1] * 10).target_shares is not None  # float rounding within 1e-6


def test_thresholds_set_on_your_traffic_hold_its_shares(fitted):
    from app.calibration.ladder_build import format_card, retarget

    inp, emb, art = fitted
    traffic, temb = _synthetic(n=200, seed=7)  # other prompts than the calibration rows
    prompts = [r.prompt for r in traffic.data.rows]
    new = retarget(art, prompts, temb, [0.2, 0.3, 0.5], "mine.jsonl")
    got = np.bincount([LadderRouter(new).decide(s) for s in LadderRouter(new).scores(prompts, temb)], minlength=4)[1:] / 200
    np.testing.assert_allclose(got, [0.2, 0.3, 0.5], atol=0.02)
    assert new.card["on_traffic"]["tier_shares"] == pytest.approx(got.tolist(), abs=1e-4)
    assert new.card["thresholds_set_for"] == {"tier_shares": [0.2, 0.3, 0.5], "traffic": "mine.jsonl", "prompts": 200}
    assert "on_calibration_rows" not in new.card and "on that traffic" in format_card(new)
    assert [b.model for b in new.boundaries] == [b.model for b in art.boundaries]  # only the thresholds move
    with pytest.raises(ValueError, match="too few"):
        retarget(art, prompts[:5], temb[:5], [0.2, 0.3, 0.5], "tiny.jsonl")


def test_traffic_with_a_climb_or_a_quality_target_is_refused(tmp_path, capsys):
    from app.cli import main

    (tmp_path / "t.jsonl").write_text('{"prompt": "hi"}\n')
    for extra in (["--tier-shares", "0.5,0.3,0.2"], ["--ladder-mode", "route", "--target-quality", "0.9"]):
        rc = main(["calibrate", "--ladder", "a,b,c", "--data", str(tmp_path), "--traffic", str(tmp_path / "t.jsonl"), "--output", str(tmp_path / "o.json"), *extra])
        assert rc == 2 and "--traffic with --ladder sets --tier-shares on your prompts" in capsys.readouterr().err
