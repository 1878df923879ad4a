"""Calibration round-trip on a small synthetic dataset (fake embedder: a unit-test double)."""

import json

import numpy as np
import pytest

from app.routing.artifact import ArtifactError, load_artifact
from app.routing.calibrate import build_artifact, cross_validate, prepare, weighted_quantiles
from app.routing.data import Dataset, Example
from app.routing.router import Router


def synthetic(n=120, seed=0):
    rng = np.random.default_rng(seed)
    ex = []
    for i in range(n):
        hard = i % 3 == 0
        text = (f"please prove or derive result {i} " if hard else f"what is item {i} ") + "word " * int(rng.integers(1, 30))
        weak = float(not hard or rng.random() < 0.2)
        ex.append(Example(text=text, source="synth", weak=weak, strong=1.0))
    return Dataset(ex, {"synthetic": "0"})


@pytest.fixture
def built(fake_embedder):
    p = prepare(synthetic(), fake_embedder, progress=False)
    table, oof, specs = cross_validate(p, n_splits=3, progress=False)
    return p, table, oof, specs


def test_cross_validation_ranks_signal_above_random(built):
    _, table, _, _ = built
    knn = max(v["synth APGR"] for k, v in table.rows.items() if k.startswith("knn"))
    assert knn > 0.8
    assert table.rows["baseline: random (mean of 20)"]["synth APGR"] < 0.65
    assert "centroid" in table.rows and "baseline: prompt length" in table.rows


def test_threshold_hits_target_share_and_artifact_round_trips(built, fake_embedder, tmp_path):
    p, table, oof, specs = built
    art = build_artifact(p, fake_embedder, table, oof, specs, tier2_share=0.3)
    assert art.tier2_share == pytest.approx(0.3, abs=0.05)
    path = art.save(tmp_path / "a.json")
    again = load_artifact(path)
    assert again == art
    r1, r2 = Router(art, fake_embedder), Router(again, fake_embedder)
    texts = ["please prove or derive result 7 " + "word " * 10, "what is item 7 " + "word " * 10]
    s1, s2 = r1.score_texts(texts).score, r2.score_texts(texts).score
    np.testing.assert_allclose(s1, s2, rtol=1e-6)
    assert s1[0] > s1[1]
    both = r1.score_texts(texts)
    d = r1.decide(both.row(0))
    assert d.tier == 2 and d.threshold == art.threshold and set(d.signals) >= {"embedding", "centroid", "llm"}
    assert r1.decide(both.row(1)).tier == 1
    # a live threshold (share controller) overrides the artifact's and is reported
    assert r1.decide(both.row(1), threshold=0.0).tier == 2 and r1.decide(both.row(1), threshold=0.0).threshold == 0.0
    assert art.build["data"]["rows"] == {"synth": 120} and "cross_validation" in art.build


def test_recover_target_and_forced_family(built, fake_embedder):
    p, table, oof, specs = built
    art = build_artifact(p, fake_embedder, table, oof, specs, tier2_share=None, recover=0.8, family="logistic")
    assert art.scorer.family == "logistic"
    # the oracle needs 1/3 tier 2 for the whole gap; 80 % of it needs at most about that much
    assert 0.05 < art.tier2_share < 0.5


def test_llm_consulted_only_inside_band(built, fake_embedder):
    p, table, oof, specs = built
    art = build_artifact(p, fake_embedder, table, oof, specs, tier2_share=0.3)
    router = Router(art, fake_embedder)
    q_t = float(art.quantile_of(art.threshold))
    assert router.wants_llm(q_t) and router.wants_llm(q_t + art.hybrid.band * 0.9)
    assert not router.wants_llm(min(1.0, q_t + art.hybrid.band + 0.05)) or q_t + art.hybrid.band >= 1.0
    sig = router.score_texts(["what is a cat"])
    d = router.decide(sig, llm_score=1.0)
    assert d.llm_consulted and d.signals["llm"] == 1.0 and d.scorer.startswith("hybrid+")
    assert d.complexity_score > float(sig.score[0])


def test_wrong_embedder_and_corrupt_artifacts_are_clear_errors(built, fake_embedder, tmp_path):
    p, table, oof, specs = built
    art = build_artifact(p, fake_embedder, table, oof, specs)
    with pytest.raises(ArtifactError, match="built with embedding model 'test/fake-embedder'"):
        art.check_embedder("sentence-transformers/all-MiniLM-L6-v2", 384)
    path = art.save(tmp_path / "a.json")
    raw = json.loads(path.read_text())
    raw["threshold"] = 3
    (tmp_path / "b.json").write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="'threshold'"):
        load_artifact(tmp_path / "b.json")
    raw["threshold"], raw["version"] = 0.5, 99
    (tmp_path / "c.json").write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="version 99"):
        load_artifact(tmp_path / "c.json")
    (tmp_path / "d.json").write_text("{}")
    with pytest.raises(ArtifactError, match="not a tierroute artifact"):
        load_artifact(tmp_path / "d.json")
    with pytest.raises(ArtifactError, match="no such artifact"):
        load_artifact(tmp_path / "missing.json")


def test_weighted_quantiles_give_each_source_equal_weight():
    x = np.array([0.0] * 90 + [1.0] * 10)
    w = np.array([1 / 90] * 90 + [1 / 10] * 10)
    assert weighted_quantiles(x, w, np.array([0.25, 0.75])).tolist() == [0.0, 1.0]
