import math

import numpy as np
import pytest

from app.routing.scorers import (
    KnnScorer,
    LogisticScorer,
    centroid_score,
    hybrid_score,
    in_band,
    parse_rating,
    platt,
    rating_score,
    softmax,
)
from app.routing.text import FEATURE_NAMES

WORDS = FEATURE_NAMES.index("log_words")


def test_centroid_formula_against_hand_computed_values():
    complex_c = np.array([1.0, 0.0])
    simple_c = np.array([0.0, 1.0])
    e = np.array([0.6, 0.8])  # unit norm
    # by hand: d_complex = sqrt(0.4^2 + 0.8^2) = 0.894427, d_simple = sqrt(0.6^2 + 0.2^2) = 0.632456,
    # 1 / (1 + exp(0.894427 - 0.632456)) = 0.434879; the scorer must land on it
    assert centroid_score(e, complex_c, simple_c) == pytest.approx(0.434879, abs=1e-6)
    # equidistant -> exactly 0.5; on the complex centroid -> exp(-sqrt 2) side
    assert centroid_score(np.array([[0.7071, 0.7071]]), complex_c, simple_c)[0] == pytest.approx(0.5)
    assert centroid_score(complex_c, complex_c, simple_c) == pytest.approx(1 / (1 + math.exp(-math.sqrt(2))))


def test_knn_vote_is_similarity_weighted():
    ref = np.array([[1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)
    labels = np.array([1, 0, 1])
    knn = KnnScorer(ref, labels, k=2, temperature=1.0, length_weight=0.0, length_mean=0.0, length_std=1.0)
    q = np.array([[1.0, 0.0]])
    # nearest two: [1,0] (sim 1, label 1) and [0.6,0.8] (sim 0.6, label 1) -> vote 1
    assert knn.vote(q)[0] == pytest.approx(1.0)
    knn3 = KnnScorer(ref, labels, k=3, temperature=1.0, length_weight=0.0, length_mean=0.0, length_std=1.0)
    w = np.exp([0.0, -1.0, -0.4])  # exp(T * (sim - max sim))
    assert knn3.vote(q)[0] == pytest.approx((w[0] + w[2]) / w.sum())


def test_knn_length_term_moves_score_on_logit_scale():
    ref = np.array([[1, 0], [0, 1]], dtype=np.float32)
    knn = KnnScorer(ref, np.array([1, 0]), k=2, temperature=1e-9, length_weight=1.0, length_mean=2.0, length_std=0.5)
    feats = np.zeros((2, len(FEATURE_NAMES)))
    feats[:, WORDS] = [2.0, 3.0]  # z = 0 and z = 2
    s = knn.raw(np.array([[0.7071, 0.7071]] * 2), feats)
    assert s[0] == pytest.approx(0.0, abs=1e-6)  # vote 0.5 -> logit 0
    assert s[1] == pytest.approx(2.0, abs=1e-6)


def test_logistic_scorer_matches_formula():
    lr = LogisticScorer(coef=np.array([1.0, -2.0, 0.5]), intercept=0.1, mean=np.zeros(3), scale=np.array([1.0, 2.0, 1.0]))
    s = lr.raw(np.array([[1.0, 2.0]]), np.array([[4.0]]))
    assert s[0] == pytest.approx(1.0 - 2.0 + 2.0 + 0.1)


def test_platt_and_softmax():
    assert platt(np.array([0.0, 2.0]), 1.5, -3.0) == pytest.approx([1 / (1 + math.exp(3.0)), 0.5])
    g = softmax(np.array([[0.0, math.log(3.0)]]))
    assert g[0] == pytest.approx([0.25, 0.75])


@pytest.mark.parametrize(
    "text,value", [("7", 7), ("Rating: 10/10", 10), (" 0", 0), ("I'd say 3 out of 10", 3), ("score=9.", 9)]
)
def test_parse_rating(text, value):
    assert parse_rating(text) == value


@pytest.mark.parametrize("text", ["", "high", "12", "3.5"])
def test_parse_rating_rejects_text_without_a_rating(text):
    with pytest.raises(ValueError):
        parse_rating(text)


def test_rating_score_from_number_and_logprob_distribution():
    assert rating_score(7) == pytest.approx(0.7)
    dist = {"2": math.log(0.25), "8": math.log(0.75), "junk": 0.0}
    assert rating_score(dist) == pytest.approx((2 * 0.25 + 8 * 0.75) / 10)
    # partial mass is renormalised over the 0-10 choices seen
    assert rating_score({"10": math.log(0.2), "0": math.log(0.2)}) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        rating_score(11)
    with pytest.raises(ValueError):
        rating_score({"x": 0.0})


def test_hybrid_nudges_by_llm_and_band_is_symmetric():
    assert hybrid_score(0.4, None, 0.5, 0.5) == 0.4
    assert hybrid_score(0.4, 0.9, 0.5, 0.5) == pytest.approx(0.6)
    assert hybrid_score(0.4, 0.1, 0.5, 0.5) == pytest.approx(0.2)
    assert hybrid_score(0.95, 1.0, 1.0, 0.0) == 1.0  # clipped
    assert in_band(0.80, 0.85, 0.05) and in_band(0.90, 0.85, 0.05)
    assert not in_band(0.79, 0.85, 0.05)


def test_length_expert_ranks_like_the_prompt_length_baseline():
    from app.calibration.metrics import length_scores
    from app.routing.scorers import LengthScorer
    from app.routing.text import feature_matrix

    texts = ["hi", "a somewhat longer prompt", "x" * 500, "what is 2+2?"]
    raw = LengthScorer().raw(np.zeros((4, 3)), feature_matrix(texts))
    assert np.argsort(raw).tolist() == np.argsort(length_scores(texts)).tolist()


def test_topic_scorer_matches_formula():
    from app.routing.scorers import TopicScorer, logit

    coef = np.array([[2.0, 0.0], [0.0, 2.0]])
    t = TopicScorer(coef, np.array([0.0, -0.5]), np.array([0.8, 0.1]), length_weight=0.5, length_mean=1.0, length_std=2.0)
    feats = np.zeros((1, len(FEATURE_NAMES)))
    feats[0, WORDS] = 5.0  # z = 2
    e = np.array([[0.6, 0.8]])
    p = np.exp([1.2, 1.1]) / np.exp([1.2, 1.1]).sum()  # softmax(e @ coef.T + intercept)
    assert t.topic_probs(e)[0] == pytest.approx(p)
    assert t.raw(e, feats)[0] == pytest.approx(float(logit(p @ [0.8, 0.1])) + 0.5 * 2.0)
    # a prompt on the hard topic scores above one on the easy topic at the same length
    both = t.raw(np.array([[1.0, 0.0], [0.0, 1.0]]), np.vstack([feats, feats]))
    assert both[0] > both[1]
    with pytest.raises(ValueError, match="at least two topics"):
        TopicScorer(coef[:1], np.array([0.0]), np.array([0.5]), 0.0, 0.0, 1.0)
