"""Calibration on small synthetic datasets (fake embedder: a unit-test double)."""

import json
import zlib

import numpy as np
import pytest

from app.routing.artifact import ArtifactError, load_artifact
from app.calibration.build import build_artifact
from app.calibration.data import Dataset, Example
from app.calibration.experts import NEEDS_STRONG, WEAK_FAILS, candidates, fit_candidate, fit_topic, labels, topics_of, usable
from app.calibration.fit import fit_platt, fit_router
from app.calibration.nested import nested_cv
from app.calibration.prepared import prepare
from app.calibration.selection import choose_expert
from app.calibration.threshold import mix_weights, set_operating_point, weighted_quantiles
from app.routing.router import Router
from app.routing.scorers import platt
from conftest import FakeEmbedder


def synthetic(n=120, seed=0, source="synth"):
    """Hard prompts ('prove ...') need the strong model 80% of the time; easy ones never."""
    rng = np.random.default_rng(seed)
    ex = []
    for i in range(n):
        hard = i % 3 == 0
        text = (f"please prove or derive result {i} {source} " if hard else f"what is item {i} {source} ") + "word " * int(rng.integers(1, 30))
        weak = float(not hard or rng.random() < 0.2)
        ex.append(Example(text=text, source=source, weak=weak, strong=1.0))
    return Dataset(ex, {source: "0"})


def lengthy(n=150, seed=1):
    """Only length carries the signal: long prompts need the strong model."""
    rng = np.random.default_rng(seed)
    ex = []
    for i in range(n):
        words = int(rng.integers(1, 60))
        needs = rng.random() < words / 60
        ex.append(Example(text=f"what is item {i} " + "word " * words, source="long", weak=float(not needs), strong=1.0))
    return Dataset(ex, {"long": "0"})


def labelled(n=60):
    ex = [Example(text=f"please prove theorem {i} " + "word " * (i % 7), source="exemplars", label=1) for i in range(n // 2)]
    ex += [Example(text=f"what is the capital number {i}", source="exemplars", label=0) for i in range(n // 2)]
    return Dataset(ex, {"exemplars": "0"})


@pytest.fixture(scope="module")
def fake():
    return FakeEmbedder()


@pytest.fixture(scope="module")
def built(fake):
    p = prepare(synthetic().extend(labelled()), fake, progress=False)
    rows = np.arange(len(p.y))
    fit = fit_router(p, rows, n_splits=3)
    ev = nested_cv(p, 3, 3, plain=fit.choices, progress=False)
    return p, fit, ev


def test_each_kind_gets_an_expert_and_a_gate_between_them(built):
    p, fit, _ = built
    assert set(fit.params.experts) == {"synth", "chat"}
    assert fit.params.gate is not None and sorted(fit.params.gate.kinds) == ["chat", "synth"]
    assert fit.params.experts["synth"].outcomes and not fit.params.experts["chat"].outcomes
    # the embedding separates 'prove' from 'what is': the chosen synth expert is not the length rule
    assert fit.choices["synth"].chosen.family != "length"
    assert fit.choices["synth"].table[fit.choices["synth"].chosen.name]["synth APGR"] > 0.8


def test_simpler_expert_kept_when_only_length_carries_signal(fake):
    """The embedding carries nothing here, so no flexible model may be chosen over the simple ones."""
    p = prepare(lengthy(), fake, progress=False)
    choice = choose_expert(p, np.arange(len(p.y)), 3, 0)
    best = max(choice.table.values(), key=lambda r: r["long APGR"])["long APGR"]
    # not the flexible kNN: the simplest candidate that is not clearly worse than the best
    assert choice.chosen.family == "length"
    assert choice.table[choice.chosen.name]["long APGR"] >= best - 0.1
    only_knn = choose_expert(p, np.arange(len(p.y)), 3, 0, family="knn")
    assert only_knn.chosen.family == "knn" and set(only_knn.table) == {c for c in only_knn.table if c.startswith("knn")}


def test_fold_offsets_do_not_count_against_a_fitted_expert(fake, monkeypatch):
    """A fitted expert that orders each fold's prompts exactly as length does, but with a different
    intercept per fold, scores what length scores: selection ranks prompts within their fold."""
    import app.calibration.selection as cal

    p = prepare(lengthy(), fake, progress=False)
    real = cal.fit_candidate
    offsets = iter(np.random.default_rng(0).normal(0, 100, 1000))

    class Shifted:
        def __init__(self, offset):
            self.offset = offset

        def raw(self, emb, feats):
            return real(p, np.arange(len(p.y)), cal.candidates("length")[0]).raw(emb, feats) + self.offset

    monkeypatch.setattr(cal, "fit_candidate", lambda p_, rows, c: real(p_, rows, c) if c.family == "length" else Shifted(next(offsets)))
    choice = choose_expert(p, np.arange(len(p.y)), 3, 0)
    length = choice.table["length"]["long APGR"]
    assert length > 0.6
    assert all(t["long APGR"] == pytest.approx(length) for t in choice.table.values())
    assert choice.chosen.family == "length"  # equal figures: the simplest is kept


def test_platt_scaling_never_inverts_an_expert():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=400)
    y = (rng.random(400) < 1 / (1 + np.exp(2 * raw))).astype(int)  # the expert is wrong way round on these rows
    a, b = fit_platt(raw, y)
    assert a > 0  # order kept: a higher raw score is never a lower probability
    assert platt(raw, a, b).mean() == pytest.approx(y.mean(), abs=0.01)
    a, b = fit_platt(raw, y, prior=0.15)
    assert a > 0 and platt(raw, a, b).mean() == pytest.approx(0.15, abs=1e-6)
    good = (rng.random(400) < 1 / (1 + np.exp(-2 * raw))).astype(int)
    assert fit_platt(raw, good)[0] == pytest.approx(2, abs=0.6)  # a real signal is fitted as it is


def test_nested_report_has_baselines_and_lift_interval(built):
    _, _, ev = built
    r = ev.report["synth"]
    assert r["metric"] == "APGR" and r["router"] > 0.75 and r["router"] > r["random"] + 0.2
    lift = r["lift over length"]
    assert lift["low"] <= lift["lift"] <= lift["high"] and lift["low"] > 0
    assert "plain CV (best candidate)" in r and r["plain CV (best candidate)"] >= r["router"] - 0.1
    assert ev.report["exemplars"]["metric"] == "AUC"
    assert len(ev.chosen) == 3 and all(set(c) == {"synth", "chat"} for c in ev.chosen)


def test_repeated_nested_cv_reports_the_mean_and_each_repeat(built):
    p, fit, ev = built
    again = nested_cv(p, 3, 3, plain=fit.choices, progress=False, repeats=2)
    for source, r in again.report.items():
        assert len(r["router by repeat"]) == 2
        assert r["router"] == pytest.approx(np.mean(r["router by repeat"]))
        assert r["router by repeat"][0] == pytest.approx(ev.report[source]["router"])  # the first repeat is the single run
        assert "router by repeat" not in ev.report[source]
    assert again.report["synth"]["router by repeat"][1] != again.report["synth"]["router by repeat"][0]  # another split
    assert np.array_equal(again.oof, ev.oof)  # the operating point's scores do not depend on the repeats
    assert len(again.chosen) == 2 * len(ev.chosen)
    lift = again.report["synth"]["lift over length"]
    assert lift["low"] <= lift["lift"] <= lift["high"]
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        nested_cv(p, 3, 3, progress=False, repeats=0)


def test_probabilities_are_calibrated_per_kind(built, fake):
    p, fit, ev = built
    synth = p.src == "synth"
    # the mean predicted probability of an outcome kind tracks its needs_strong rate
    assert ev.oof[synth].mean() == pytest.approx(p.y[synth].mean(), abs=0.1)
    # a label-only kind is scaled to the label prior, whatever its class balance
    fit2 = fit_router(p, np.arange(len(p.y)), n_splits=3, label_prior=0.4)
    for f, prior in ((fit, 0.15), (fit2, 0.4)):  # on the out-of-fold scores the calibration was fitted to
        assert platt(f.choices["chat"].oof_raw, *f.params.experts["chat"].platt).mean() == pytest.approx(prior, abs=1e-6)
    synth = p.y[p.kind == "synth"]
    assert platt(fit2.choices["synth"].oof_raw, *fit2.params.experts["synth"].platt).mean() == pytest.approx(synth.mean(), abs=0.02)
    art = build_artifact(p, fake, fit, ev, tier2_share=0.3)
    assert set(Router(art, fake).score_texts(["what is the capital number 3"]).kind) == {"chat"}


def test_threshold_hits_target_share_and_artifact_round_trips(built, fake, tmp_path):
    p, fit, ev = built
    art = build_artifact(p, fake, fit, ev, tier2_share=0.3)
    assert art.tier2_share == pytest.approx(0.3, abs=0.05)
    assert set(art.operating_point["tier2_share_by_source"]) == {"synth", "exemplars"}
    path = art.save(tmp_path / "a.json")
    again = load_artifact(path)
    assert again == art
    r1, r2 = Router(art, fake), Router(again, fake)
    texts = ["please prove or derive result 7 synth " + "word " * 10, "what is item 7 synth " + "word " * 10]
    s1, s2 = r1.score_texts(texts).score, r2.score_texts(texts).score
    np.testing.assert_allclose(s1, s2, rtol=1e-6)
    assert s1[0] > s1[1]
    both = r1.score_texts(texts)
    d = r1.decide(both.row(0))
    assert d.tier == 2 and d.threshold == art.threshold and set(d.signals) >= {"embedding", "centroid", "llm"}
    assert d.kind == "synth"
    assert r1.decide(both.row(1)).tier == 1
    # a live threshold (share controller) overrides the artifact's and is reported
    assert r1.decide(both.row(1), threshold=0.0).tier == 2 and r1.decide(both.row(1), threshold=0.0).threshold == 0.0
    assert art.build["data"]["rows"] == {"synth": 120, "exemplars": 60} and "nested_cross_validation" in art.build


def test_recover_target(built, fake):
    p, fit, ev = built
    art = build_artifact(p, fake, fit, ev, tier2_share=None, recover=0.8)
    # the oracle needs ~27% tier 2 for the whole synth gap; 80% of it needs at most about that much
    assert 0.05 < art.tier2_share < 0.5


def test_operating_point_on_own_traffic(built, fake):
    p, fit, ev = built
    art = build_artifact(p, fake, fit, ev, tier2_share=0.15)
    rng = np.random.default_rng(3)
    traffic = rng.beta(2, 5, 500)
    own = set_operating_point(art, traffic, 0.25, "traffic.jsonl")
    assert (traffic >= own.threshold).mean() == pytest.approx(0.25, abs=0.01)
    assert own.operating_point["traffic"] == "traffic.jsonl" and own.operating_point["prompts"] == 500
    assert own.score_quantiles[50] == pytest.approx(np.median(traffic), abs=1e-9)
    with pytest.raises(ValueError, match="too few"):
        set_operating_point(art, traffic[:5], 0.25, "t")


def test_llm_consulted_only_inside_band(built, fake):
    p, fit, ev = built
    art = build_artifact(p, fake, fit, ev, tier2_share=0.3)
    router = Router(art, fake)
    q_t = float(art.quantile_of(art.threshold))
    assert router.wants_llm(q_t) and router.wants_llm(q_t + art.hybrid.band * 0.9)
    outside = (q_t - art.hybrid.band - 0.05, q_t + art.hybrid.band + 0.05)
    assert 0.0 <= outside[0] and outside[1] <= 1.0  # room outside the band on both sides, so the next line tests something
    assert not router.wants_llm(outside[0]) and not router.wants_llm(outside[1])
    sig = router.score_texts(["what is a cat"])
    d = router.decide(sig, llm_score=1.0)
    assert d.llm_consulted and d.signals["llm"] == 1.0 and d.scorer.startswith("hybrid+")
    assert d.complexity_score > float(sig.score[0])


def test_wrong_embedder_and_corrupt_artifacts_are_clear_errors(built, fake, tmp_path):
    p, fit, ev = built
    art = build_artifact(p, fake, fit, ev)
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
    raw["version"] = 2
    raw["scorer"]["gate"]["kinds"] = ["synth", "other"]
    (tmp_path / "e.json").write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="gate.kinds"):
        load_artifact(tmp_path / "e.json")
    (tmp_path / "d.json").write_text("{}")
    with pytest.raises(ArtifactError, match="not a tierroute artifact"):
        load_artifact(tmp_path / "d.json")
    with pytest.raises(ArtifactError, match="no such artifact"):
        load_artifact(tmp_path / "missing.json")


def test_mix_weights_give_each_kind_then_each_source_equal_weight(fake):
    ds = synthetic(90, source="a").extend(synthetic(30, source="a:other-pair")).extend(synthetic(60, source="b"))
    p = prepare(ds, fake, progress=False)
    w = mix_weights(p)
    assert sorted(set(p.kind)) == ["a", "b"]
    assert w[p.kind == "a"].sum() == pytest.approx(0.5) and w[p.kind == "b"].sum() == pytest.approx(0.5)
    assert w[p.src == "a"].sum() == pytest.approx(0.25) and w[p.src == "a:other-pair"].sum() == pytest.approx(0.25)
    x = np.array([0.0] * 90 + [1.0] * 10)
    wq = np.array([1 / 90] * 90 + [1 / 10] * 10)
    assert weighted_quantiles(x, wq, np.array([0.25, 0.75])).tolist() == [0.0, 1.0]


class TopicEmbedder(FakeEmbedder):
    """Unit-test double: a prompt about topic j points along axis j (plus noise); nothing else is embedded."""

    model_id = "test/topic-embedder"

    def encode(self, texts, progress=False):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            v = np.random.default_rng(zlib.crc32(t.encode())).normal(0, 0.25, self.dim)
            v[int(t.split("topic-")[1][0])] += 1.0
            out[i] = v / np.linalg.norm(v)
        return out


def topical(n=360, seed=2, groups=True):
    """Six topics; prompts of topics 0 and 1 need the strong model 60% of the time, the others 5%;
    length is random. Rows name their topic (the MMLU subject, say) when ``groups``."""
    rng = np.random.default_rng(seed)
    ex = []
    for i in range(n):
        t = i % 6
        needs = rng.random() < (0.6 if t < 2 else 0.05)
        text = f"question {i} on topic-{t} " + "word " * int(rng.integers(1, 40))
        ex.append(Example(text=text, source="quiz", group=f"subject{t}" if groups else "", weak=float(not needs), strong=1.0))
    return Dataset(ex, {"quiz": "0"})


def test_topic_expert_learns_the_rate_of_each_topic(tmp_path):
    emb = TopicEmbedder()
    p = prepare(topical(), emb, progress=False)
    rows = np.arange(len(p.y))
    assert topics_of(p, rows) == [f"subject{t}" for t in range(6)]
    choice = choose_expert(p, rows, 3, 0)
    table = choice.table
    assert {"topic length=0.25", "topic length=0.5"} <= set(table)
    # the topic carries the signal and length none: the topic expert beats length clearly, and the
    # rule picks it over the more flexible kNN unless kNN is clearly better
    assert table["topic length=0.25"]["quiz APGR"] > table["length"]["quiz APGR"] + 0.2
    assert choice.chosen.family in ("topic", "logistic")
    only = choose_expert(p, rows, 3, 0, family="topic")
    scorer = fit_candidate(p, rows, only.chosen)
    assert scorer.topics == [f"subject{t}" for t in range(6)]
    # smoothed rates: the hard topics' near 0.6, the easy ones' near 0.05, shrunk towards the mean
    assert all(0.4 < r < 0.65 for r in scorer.rates[:2]) and all(r < 0.15 for r in scorer.rates[2:])
    # the topic probabilities are the classifier's, also with two topics (sklearn keeps one row of coefficients then)
    from app.calibration.experts import topic_model

    two = rows[np.isin(p.group, ["subject0", "subject3"])]
    pair = fit_topic(p, two, 0.25)
    assert pair.coef.shape == (2, emb.dim)
    np.testing.assert_allclose(pair.topic_probs(p.emb[:12]), topic_model(p, two).predict_proba(p.emb[:12]), atol=1e-5)
    # stored in an artifact, read back, it scores a hard-topic prompt above an easy one
    fit = fit_router(p, rows, n_splits=3, family="topic")
    ev = nested_cv(p, 3, 2, family="topic", plain=fit.choices, progress=False)
    art = load_artifact(build_artifact(p, emb, fit, ev, tier2_share=0.3).save(tmp_path / "t.json"))
    assert art.scorer.experts["quiz"].model.family == "topic"
    s = Router(art, emb).score_texts(["question x on topic-1 word word", "question x on topic-4 word word"]).score
    assert s[0] > s[1] + 0.2
    assert ev.report["quiz"]["router"] > ev.report["quiz"]["prompt length"] + 0.2


def test_topic_expert_only_where_outcome_rows_name_topics(fake):
    emb = TopicEmbedder()
    p = prepare(topical(groups=False), emb, progress=False)
    rows = np.arange(len(p.y))
    assert topics_of(p, rows) == []
    assert not any(name.startswith("topic") for name in choose_expert(p, rows, 3, 0).table)
    with pytest.raises(ValueError, match="kind 'quiz' has no topics"):
        choose_expert(p, rows, 3, 0, family="topic")
    # label-only rows: their categories were written per label, never topics
    cats = Dataset([Example(text=f"t {i}", source="exemplars", group=f"c{i % 2}", label=i % 2) for i in range(60)], {})
    pc = prepare(cats, fake, progress=False)
    assert topics_of(pc, np.arange(60)) == []


def near_ties(n=180, seed=2):
    """Short 'prove' prompts: the small model fails, the large one succeeds (a gain of 1). Long
    'derive' prompts: both are judged about the same (0.5 vs 0.6: needs_strong, a gain of 0.1).
    Short 'what is' prompts: both succeed. The fake embedding does not tell 'prove' from 'derive';
    trained on needs_strong, a model learns that long prompts need the large model (all long ones
    do, a third of the short ones do) and puts the near-ties first; trained on the small model's
    failures, it puts the short 'prove' prompts first."""
    rng = np.random.default_rng(seed)
    ex = []
    for i in range(n):
        if i % 3 == 0:
            ex.append(Example(text=f"please prove lemma {i} " + "word " * int(rng.integers(1, 6)), source="pair", weak=0.0, strong=1.0))
        elif i % 3 == 1:
            ex.append(Example(text=f"please derive note {i} " + "word " * int(rng.integers(40, 60)), source="pair", weak=0.5, strong=0.6))
        else:
            ex.append(Example(text=f"what is item {i} " + "word " * int(rng.integers(1, 6)), source="pair", weak=1.0, strong=1.0))
    return Dataset(ex, {"pair": "0"})


def test_weak_fails_target_chosen_where_the_small_models_failures_carry_the_signal(fake):
    p = prepare(near_ties(), fake, progress=False)
    rows = np.arange(len(p.y))
    assert labels(p, rows).tolist() == p.y.tolist() and labels(p, rows, WEAK_FAILS).tolist() == [float(w < 0.5) for w in p.weak]
    choice = choose_expert(p, rows, 3, 0)
    t = {name: r["pair APGR"] for name, r in choice.table.items()}
    assert t["logistic C=0.1 target=weak_fails"] > t["logistic C=0.1"] + 0.1
    assert choice.chosen.family == "logistic" and choice.chosen.target == WEAK_FAILS
    # whatever it was trained on, the expert is calibrated to needs_strong (2/3 of rows here; weak_fails: 1/3)
    fit = fit_router(p, rows, 3)
    expert = fit.params.experts["pair"]
    assert expert.candidate == choice.chosen.name
    assert platt(choice.oof_raw, *expert.platt).mean() == pytest.approx(p.y.mean(), abs=0.02)
    assert p.y.mean() == pytest.approx(2 / 3, abs=0.01)


def test_weak_fails_only_where_rows_have_outcomes_of_both_kinds(fake):
    wf = [c for c in candidates() if c.target == WEAK_FAILS]
    assert wf and all(c.family == "logistic" for c in wf)
    # as many parameters as the same logistic regression on needs_strong: the same rank
    same = {c.C: c.rank for c in candidates() if c.family == "logistic" and c.target == NEEDS_STRONG}
    assert all(c.rank == same[c.C] for c in wf)
    chat = prepare(labelled(), fake, progress=False)
    assert not any(usable(chat, np.arange(len(chat.y)), c) for c in wf)
    with pytest.raises(ValueError, match="needs outcome rows"):
        labels(chat, np.arange(len(chat.y)), WEAK_FAILS)
    # the small model never fails below 0.5 here: nothing to learn
    ok = Dataset([Example(text=f"q {i}", source="s", weak=0.5 + (i % 2) / 2, strong=1.0) for i in range(40)], {})
    pk = prepare(ok, fake, progress=False)
    assert not any(usable(pk, np.arange(40), c) for c in wf)
    assert "logistic C=0.1 target=weak_fails" not in choose_expert(pk, np.arange(40), 3, 0).table


def test_topic_params_must_match_their_centroids():
    from pydantic import ValidationError

    from app.routing.artifact import B64Array, TopicParams

    ok = dict(topics=["a", "b"], coef=B64Array.of(np.eye(2)), intercept=[0.0, 0.0], rates=[0.1, 0.6], length_weight=0.25, length_mean=2.0, length_std=1.0)
    assert TopicParams(**ok).rates == [0.1, 0.6]
    with pytest.raises(ValidationError, match="coef rows"):
        TopicParams(**{**ok, "coef": B64Array.of(np.eye(3))})
    with pytest.raises(ValidationError, match="strictly between 0 and 1"):
        TopicParams(**{**ok, "rates": [0.0, 0.6]})


def test_min_source_share_lowers_the_threshold_only_where_a_source_is_starved(built, fake):
    p, fit, ev = built
    plain = build_artifact(p, fake, fit, ev, tier2_share=0.05)
    shares = plain.operating_point["tier2_share_by_source"]
    assert min(shares.values()) < 0.2  # at 5% of the mix some source gets less than 20%
    floored = build_artifact(p, fake, fit, ev, tier2_share=0.05, min_source_share=0.2)
    assert all(v >= 0.2 for v in floored.operating_point["tier2_share_by_source"].values())
    assert floored.threshold < plain.threshold and floored.tier2_share > plain.tier2_share
    assert floored.operating_point["target"] == {"tier2_share": 0.05, "min_source_share": 0.2}
    # a floor every source already clears changes nothing
    same = build_artifact(p, fake, fit, ev, tier2_share=0.05, min_source_share=min(shares.values()) / 2)
    assert same.threshold == plain.threshold


def test_length_keeps_a_wider_margin_than_learned_candidates():
    """Length is replaced only by a clear winner (sqrt(2 ln K) standard errors); between learned
    candidates the one-standard-error rule picks, so a kind where the topic expert clearly beats
    length does not fall back to a logistic regression 1.5 standard errors behind it."""
    from app.calibration.experts import candidates
    from app.calibration.selection import selection_z, simplest_near_best

    by = {c.name: c for c in candidates()}
    length, logistic, topic = by["length"], by["logistic C=0.003"], by["topic length=0.25"]
    se = {length: 0.02, logistic: 0.02, topic: 0.0}
    assert selection_z(3) > 1.4
    # the best leads length by 1.4 standard errors: chance for the best of several, length kept
    assert simplest_near_best({length: 0.60, logistic: 0.628, topic: 0.6}, se) is length
    # topic leads length by 4.5 SE and the logistic regression by 1.5: topic, not the simpler logistic
    assert simplest_near_best({length: 0.60, logistic: 0.66, topic: 0.69}, se) is topic
    # the logistic regression within one SE of topic: the simpler one
    assert simplest_near_best({length: 0.60, logistic: 0.675, topic: 0.69}, se) is logistic
