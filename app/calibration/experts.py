"""The candidate experts of a kind of traffic, and how each is fitted.

Per kind, a few candidates: prompt length alone; logistic regression on the embedding and cheap
features, trained on ``needs_strong`` and, where the rows have outcomes, on ``weak_fails`` (the
small model's failures); where the kind's outcome rows name their topic (``group``/``category``,
e.g. the MMLU subject), the rate of the topics a prompt resembles plus a length term; a kNN vote
of the kind's labelled prompts plus a length term. Which one a kind gets is
:mod:`app.calibration.selection`'s choice; the fitted scorers are :mod:`app.routing.scorers`'.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from app.calibration.prepared import Prepared
from app.routing.artifact import B64Array, KnnParams, LengthParams, LogisticParams, TopicParams
from app.routing.scorers import WORDS, KnnScorer, LengthScorer, LogisticScorer, TopicScorer

KNN_GRID = [(k, b) for k in (30, 100, 300) for b in (0.25, 0.5)]
KNN_TEMPERATURE = 10.0
LOGISTIC_GRID = (0.003, 0.01, 0.1)
TOPIC_GRID = (0.25, 0.5)  # length weights of the topic expert
TOPIC_C = 10.0  # of the multinomial logistic regression that tells a prompt's topic
TOPIC_MIN_ROWS = 10  # a group needs this many rows to be a topic
TOPIC_SMOOTHING = 10.0  # a topic's rate is shrunk towards the kind's rate as if it had this many more rows
NEEDS_STRONG = "needs_strong"  # weak < strong: the label the scores are calibrated to
WEAK_FAILS = "weak_fails"  # weak < 0.5: the small model fails, whatever the large one does


@dataclass(frozen=True)
class Candidate:
    """One expert to try on a kind; ``rank`` orders them from simplest (0) up."""

    name: str
    family: str  # length | logistic | topic | knn
    rank: int
    C: float = 0.0
    k: int = 0
    length: float = 0.0
    target: str = NEEDS_STRONG  # what the expert is trained to predict (its scores are always calibrated to needs_strong)


def candidates(family: str | None = None) -> list[Candidate]:
    """The candidates, simplest first: the length rule (one feature), logistic regression from the
    strongest regularisation down (each trained on needs_strong and, where rows have outcomes, on
    weak_fails: as many parameters, so the same rank), the topic expert (a rate per topic; only where
    rows name topics), then kNN (the most flexible; more neighbours average more)."""
    out = [Candidate("length", "length", 0)]
    for i, C in enumerate(LOGISTIC_GRID):
        out += [Candidate(f"logistic C={C}", "logistic", 1 + i, C=C)]
        out += [Candidate(f"logistic C={C} target={WEAK_FAILS}", "logistic", 1 + i, C=C, target=WEAK_FAILS)]
    # topics: one rate per topic (tens of parameters that matter), so simpler than kNN
    out += [Candidate(f"topic length={b}", "topic", 5 + i, length=b) for i, b in enumerate(TOPIC_GRID)]
    # kNN: more neighbours average more, so larger k counts as simpler
    knn = sorted(KNN_GRID, key=lambda kb: (-kb[0], kb[1]))
    out += [Candidate(f"knn k={k} length={b}", "knn", 10 + i, k=k, length=b) for i, (k, b) in enumerate(knn)]
    out = [c for c in out if family is None or c.family == family]
    if not out:
        raise ValueError(f"--family {family!r}: no such expert family (length, logistic, topic, knn)")
    return out


def labels(p: Prepared, rows: np.ndarray, target: str = NEEDS_STRONG) -> np.ndarray:
    """What an expert is trained on: ``needs_strong`` (``p.y``: weak < strong, or the explicit label)
    or ``weak_fails`` (the small model's score below 0.5; outcome rows only). Where the large model
    also fails often or judgements tie, the small model's failures can be the cleaner signal."""
    if target == NEEDS_STRONG:
        return p.y[rows]
    if np.isnan(p.weak[rows]).any():
        raise ValueError(f"target {target!r} needs outcome rows")
    return (p.weak[rows] < 0.5).astype(np.float32)


def usable(p: Prepared, rows: np.ndarray, c: Candidate) -> bool:
    """Whether ``c`` can be fitted on ``rows``: topics need named groups, weak_fails outcome rows with both classes."""
    if c.family == "topic" and not topics_of(p, rows):
        return False
    return c.target == NEEDS_STRONG or (not np.isnan(p.weak[rows]).any() and len(set(labels(p, rows, c.target))) == 2)


def fit_logistic(p: Prepared, rows: np.ndarray, C: float, target: str = NEEDS_STRONG) -> LogisticScorer:
    a = np.hstack([p.emb[rows], p.feats[rows]])
    sc = StandardScaler().fit(a)
    m = LogisticRegression(C=C, max_iter=3000).fit(sc.transform(a), labels(p, rows, target))
    return LogisticScorer(m.coef_[0], float(m.intercept_[0]), sc.mean_, sc.scale_)


def length_stats(p: Prepared, rows: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of log words on ``rows``: the z-scale of an expert's length term."""
    col = p.feats[rows, WORDS]
    return float(col.mean()), float(col.std() or 1.0)


def fit_knn(p: Prepared, rows: np.ndarray, k: int, length_weight: float) -> KnnScorer:
    return KnnScorer(p.emb[rows], p.y[rows], k, KNN_TEMPERATURE, length_weight, *length_stats(p, rows))


def topics_of(p: Prepared, rows: np.ndarray) -> list[str]:
    """The groups of ``rows`` that can be topics: outcome rows only (a label-only source's groups
    were written per label), named, with at least TOPIC_MIN_ROWS rows each; [] when fewer than two."""
    if np.isnan(p.weak[rows]).any():
        return []
    names, counts = np.unique(p.group[rows].astype(str), return_counts=True)
    out = [str(g) for g, n in zip(names, counts) if g and n >= TOPIC_MIN_ROWS]
    return out if len(out) >= 2 else []


def topic_model(p: Prepared, rows: np.ndarray) -> LogisticRegression:
    """A classifier of the topics of ``rows`` on the embedding; fitted once per set of rows
    (the topic candidates differ only in their length weight)."""
    key = ("topic", hashlib.sha1(rows.tobytes()).hexdigest())
    if key not in p.cache:
        topics = topics_of(p, rows)
        if not topics:
            raise ValueError(f"kind {p.kind[rows[0]]!r}: fewer than two topics of {TOPIC_MIN_ROWS} rows in these rows")
        group = p.group[rows].astype(str)
        keep = np.isin(group, topics)
        p.cache[key] = LogisticRegression(C=TOPIC_C, max_iter=300, tol=1e-3).fit(p.emb[rows[keep]], group[keep])
    return p.cache[key]


def fit_topic(p: Prepared, rows: np.ndarray, length_weight: float) -> TopicScorer:
    clf = topic_model(p, rows)
    coef, intercept = clf.coef_, clf.intercept_
    if len(clf.classes_) == 2:  # sklearn keeps one row for two classes: P(second) = sigmoid(x @ coef + b)
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.array([0.0, intercept[0]])
    group, y = p.group[rows].astype(str), p.y[rows]
    rates = [(y[group == t].sum() + TOPIC_SMOOTHING * y.mean()) / ((group == t).sum() + TOPIC_SMOOTHING) for t in clf.classes_]
    return TopicScorer(coef, intercept, np.array(rates), length_weight, *length_stats(p, rows), [str(t) for t in clf.classes_])


def fit_candidate(p: Prepared, rows: np.ndarray, c: Candidate):
    if len(set(p.y[rows])) < 2:
        raise ValueError(f"calibration data of kind {p.kind[rows[0]]!r} needs both simple and complex (or needs_strong) examples")
    if c.family == "length":
        return LengthScorer()
    if c.family == "logistic":
        return fit_logistic(p, rows, c.C, c.target)
    if c.family == "topic":
        return fit_topic(p, rows, c.length)
    return fit_knn(p, rows, c.k, c.length)


def expert_params(scorer) -> KnnParams | TopicParams | LogisticParams | LengthParams:
    if isinstance(scorer, TopicScorer):
        return TopicParams(
            topics=scorer.topics, coef=B64Array.of(scorer.coef), intercept=scorer.intercept.tolist(), rates=scorer.rates.tolist(),
            length_weight=scorer.length_weight, length_mean=scorer.length_mean, length_std=scorer.length_std,
        )  # fmt: skip
    if isinstance(scorer, KnnScorer):
        return KnnParams(
            k=scorer.k, temperature=scorer.temperature, length_weight=scorer.length_weight, length_mean=scorer.length_mean,
            length_std=scorer.length_std, reference=B64Array.of(scorer.ref, "float16"), labels=B64Array.of(scorer.labels, "int8"),
        )  # fmt: skip
    if isinstance(scorer, LogisticScorer):
        return LogisticParams(coef=scorer.coef.tolist(), intercept=scorer.intercept, mean=scorer.mean.tolist(), scale=scorer.scale.tolist())
    return LengthParams()
