"""Build a calibration artifact: a gate over kinds of traffic and one calibrated expert per kind.

1. Embed every prompt; compute cheap text features. Every source belongs to a
   *kind* of traffic: a source with weak/strong outcomes is a kind of its own
   (MMLU-style knowledge questions, GSM8K-style word problems, a user's own
   traffic); label-only sources (simple/complex exemplars, Arena-Hard's
   one-sided "hard" prompts) together form the kind ``chat``.
2. Per kind, a few candidates: prompt length alone; logistic regression on the
   embedding and cheap features, trained on ``needs_strong`` and, where the
   rows have outcomes, on ``weak_fails`` (the small model's failures); where
   the kind's outcome rows name their topic (``group``/``category``, e.g. the
   MMLU subject), the rate of the topics a prompt resembles plus a length
   term; a kNN vote of the kind's labelled prompts plus a length term. Each is
   cross-validated on the kind's rows (APGR per source with outcomes, ROC AUC
   per label-only source; the mean over the kind's sources). The choice
   prefers the simpler model: the simplest candidate whose shortfall from the
   best one is within one bootstrap standard error (the one-standard-error
   rule; of two equally simple ones, the better), so a complex model must
   clearly win to be chosen -- on a few hundred rows it rarely does.
3. The chosen expert is calibrated (Platt scaling of its out-of-fold raw
   scores) to the probability that a prompt needs the large model
   (``needs_strong``); a label-only kind to P(complex), shifted so that its mean
   over the kind's rows is ``label_prior`` (there is no outcome rate to learn).
4. A gate (multinomial logistic regression) says which kind a prompt resembles;
   the score is the gate-weighted mixture of the experts' probabilities, so one
   threshold means about the same risk in every kind.
5. Honest figures: steps 2-4 run again inside an outer cross-validation
   (nested), so neither the choice of candidate nor the calibration ever sees
   the prompts it is scored on. Per source: the nested figure beside the plain
   cross-validated figure of the best candidate (chosen on the same folds it is
   scored on), prompt length and random, and the lift over length with a
   paired bootstrap interval.
6. The threshold is set on a stated traffic mix -- each kind weighs the same,
   and each source the same within its kind -- from the nested out-of-fold
   scores, for a tier-2 share or for a share of the quality gap recovered; or
   on the user's own unlabelled traffic (:func:`set_operating_point`).
"""

from __future__ import annotations

import hashlib
import shlex
import sys
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import brentq
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from app import __version__
from app.routing.artifact import (
    Artifact,
    B64Array,
    EmbedderInfo,
    Expert,
    Gate,
    Hybrid,
    KindsParams,
    KnnParams,
    LengthParams,
    LogisticParams,
    TopicParams,
)
from app.routing.data import Dataset, Example
from app.routing.embed import Embedder
from app.routing.metrics import bootstrap, curve, format_lift, length_scores, mean_lift_interval, random_baseline, summarize
from app.routing.router import KindsScorer
from app.routing.scorers import WORDS, KnnScorer, LengthScorer, LogisticScorer, TopicScorer, sigmoid
from app.routing.text import feature_matrix

CHAT = "chat"  # the kind of every label-only source
KNN_GRID = [(k, b) for k in (30, 100, 300) for b in (0.25, 0.5)]
KNN_TEMPERATURE = 10.0
LOGISTIC_GRID = (0.003, 0.01, 0.1)
TOPIC_GRID = (0.25, 0.5)  # length weights of the topic expert
TOPIC_C = 10.0  # of the multinomial logistic regression that tells a prompt's topic
TOPIC_MIN_ROWS = 10  # a group needs this many rows to be a topic
TOPIC_SMOOTHING = 10.0  # a topic's rate is shrunk towards the kind's rate as if it had this many more rows
GATE_C = 1.0
MIN_PLATT_SLOPE = 0.01  # per standard deviation of the raw score
LABEL_PRIOR = 0.15
SELECTION_BOOT = 200  # bootstrap resamples for the standard error of a candidate's shortfall
NEEDS_STRONG = "needs_strong"  # weak < strong: the label the scores are calibrated to
WEAK_FAILS = "weak_fails"  # weak < 0.5: the small model fails, whatever the large one does
SELECTION_Z = 1.0  # the one-standard-error rule: a simpler candidate is kept unless it falls short by more than this many standard errors


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


@dataclass
class Prepared:
    """Everything calibration computes once per dataset."""

    ds: Dataset
    emb: np.ndarray
    feats: np.ndarray
    y: np.ndarray
    src: np.ndarray
    kind: np.ndarray
    weak: np.ndarray  # nan where a row has no outcomes
    strong: np.ndarray
    group: np.ndarray  # each row's group (e.g. the MMLU subject; "" when the data names none)
    cache: dict = field(default_factory=dict, repr=False)  # models fitted once per set of rows

    @property
    def texts(self) -> list[str]:
        return [e.text for e in self.ds.examples]


def kind_of(e: Example) -> str:
    return e.source.split(":", 1)[0] if e.has_outcomes else CHAT


def prepare(ds: Dataset, embedder: Embedder, progress: bool = True) -> Prepared:
    texts = [e.text for e in ds.examples]
    emb = embedder.encode(texts, progress=progress)
    nan = float("nan")
    return Prepared(
        ds,
        emb,
        feature_matrix(texts),
        np.array([e.target for e in ds.examples], dtype=np.float32),
        np.array([e.source for e in ds.examples], dtype=object),
        np.array([kind_of(e) for e in ds.examples], dtype=object),
        np.array([e.weak if e.has_outcomes else nan for e in ds.examples], dtype=float),
        np.array([e.strong if e.has_outcomes else nan for e in ds.examples], dtype=float),
        np.array([e.group for e in ds.examples], dtype=object),
    )


# --- metrics ------------------------------------------------------------------


def evaluate_scores(p: Prepared, scores: np.ndarray, rows: np.ndarray | None = None) -> dict[str, float]:
    """APGR per source with outcomes, ROC AUC per label-only source with both classes (``scores`` align with ``rows``)."""
    rows = np.arange(len(p.y)) if rows is None else rows
    src, weak, strong, y = p.src[rows], p.weak[rows], p.strong[rows], p.y[rows]
    out = {}
    for s in sorted(set(src)):
        m = src == s
        if not np.isnan(weak[m]).any() and weak[m].mean() != strong[m].mean():
            out[f"{s} APGR"] = summarize(scores[m], weak[m], strong[m])["apgr"]
        elif len(set(y[m])) == 2:
            out[f"{s} AUC"] = float(roc_auc_score(y[m], scores[m]))
    return out


def selection_score(metrics: dict[str, float]) -> float:
    """Mean over sources of APGR (outcome data) or ROC AUC (label-only data): 0.5 random, 1.0 perfect."""
    return float(np.mean(list(metrics.values()))) if metrics else float("nan")


def _shortfall_se(p: Prepared, rows: np.ndarray, scores: np.ndarray, best: np.ndarray, seed: int) -> float:
    """Bootstrap standard error of ``selection_score(best) - selection_score(scores)`` over the rows."""

    def shortfall(i):
        try:
            a, b = evaluate_scores(p, best[i], rows[i]), evaluate_scores(p, scores[i], rows[i])
        except ValueError:  # a resample without both classes
            return None
        return selection_score(a) - selection_score(b) if a and a.keys() == b.keys() else None

    diffs = bootstrap(len(rows), shortfall, SELECTION_BOOT, seed)
    return float(np.std(diffs)) if len(diffs) > 1 else 0.0


# --- experts ------------------------------------------------------------------


def folds(p: Prepared, rows: np.ndarray, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    strat = np.char.add(p.src[rows].astype(str), p.y[rows].astype(int).astype(str))
    n = max(2, min(n_splits, int(np.unique(strat, return_counts=True)[1].max())))
    return list(StratifiedKFold(n, shuffle=True, random_state=seed).split(rows, strat))


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


@dataclass
class KindChoice:
    """The cross-validation of one kind's candidates and the one chosen."""

    chosen: Candidate
    table: dict[str, dict[str, float]]  # candidate -> metric per source, out of fold
    oof_raw: np.ndarray  # the chosen candidate's out-of-fold raw scores on the kind's rows


def choose_expert(p: Prepared, rows: np.ndarray, n_splits: int, seed: int, family: str | None = None) -> KindChoice:
    """Cross-validate every candidate on ``rows``; keep the simplest not clearly worse than the best."""
    splits = folds(p, rows, n_splits, seed)
    fold = np.zeros(len(rows), dtype=int)
    for i, (_, te) in enumerate(splits):
        fold[te] = i
    # Each fold's model has its own scale and intercept: pooling raw scores across folds
    # mixes those shifts into the ranking (and penalises fitted models against the
    # parameter-free length rule), so a source's prompts are ranked within their fold.
    group = np.char.add(p.src[rows].astype(str), fold.astype(str))
    oof, ranked = {}, {}
    fitting = [c for c in candidates(family) if usable(p, rows, c)]
    if not fitting:
        raise ValueError(
            f"--family {family}: kind {p.kind[rows[0]]!r} has no topics (outcome rows naming a group or category, "
            f"at least two groups of {TOPIC_MIN_ROWS} rows)"
        )
    for c in fitting:
        raw = np.zeros(len(rows))
        for tr, te in splits:
            raw[te] = fit_candidate(p, rows[tr], c).raw(p.emb[rows[te]], p.feats[rows[te]])
        oof[c], ranked[c] = raw, within_group_ranks(raw, group)
    table = {c.name: evaluate_scores(p, r, rows) for c, r in ranked.items()}
    score = {c: np.nan_to_num(selection_score(table[c.name]), nan=-1.0) for c in oof}
    best = max(oof, key=score.get)
    near = [c for c in oof if c is best or score[c] >= score[best] - SELECTION_Z * _shortfall_se(p, rows, ranked[c], ranked[best], seed)]
    chosen = min(near, key=lambda c: (c.rank, -score[c]))  # as simple, then the better
    return KindChoice(chosen, table, oof[chosen])


def fit_platt(raw: np.ndarray, y: np.ndarray, prior: float | None = None) -> tuple[float, float]:
    """(a, b) of ``sigmoid(a * raw + b)`` fitted to ``y``; with ``prior``, b shifted so the mean is ``prior``."""
    m = LogisticRegression(C=1e4, max_iter=1000).fit(raw.reshape(-1, 1), y)
    a, b = float(m.coef_[0, 0]), float(m.intercept_[0])
    if a <= 0:  # no signal on these rows: never let the scaling invert the expert's order
        a, b = MIN_PLATT_SLOPE / float(raw.std() or 1.0), float(np.log(y.mean() / (1 - y.mean())) if 0 < y.mean() < 1 else 0.0)
        b -= a * float(raw.mean())
    if prior is not None:
        b += brentq(lambda d: sigmoid(a * raw + b + d).mean() - prior, -30.0, 30.0)
    return a, b


def fit_gate(p: Prepared, rows: np.ndarray, kinds: list[str]) -> Gate:
    a = np.hstack([p.emb[rows], p.feats[rows]])
    sc = StandardScaler().fit(a)
    m = LogisticRegression(C=GATE_C, max_iter=3000, class_weight="balanced").fit(sc.transform(a), p.kind[rows])
    order = [list(m.classes_).index(k) for k in kinds]
    if len(kinds) == 2:  # sklearn's binary model: logits (0, z) for classes_ (0, 1)
        coef = np.vstack([np.zeros_like(m.coef_[0]), m.coef_[0]])
        intercept = np.array([0.0, m.intercept_[0]])
    else:
        coef, intercept = m.coef_, m.intercept_
    return Gate(kinds=kinds, coef=coef[order].tolist(), intercept=intercept[order].tolist(), mean=sc.mean_.tolist(), scale=sc.scale_.tolist())


@dataclass
class Fit:
    params: KindsParams
    choices: dict[str, KindChoice]


def fit_router(
    p: Prepared, rows: np.ndarray, n_splits: int = 5, seed: int = 0, family: str | None = None, label_prior: float = LABEL_PRIOR
) -> Fit:
    """Choose and calibrate an expert per kind on ``rows``, and the gate between kinds."""
    kinds = sorted(str(k) for k in set(p.kind[rows]))
    experts, choices = {}, {}
    for kind in kinds:
        kr = rows[p.kind[rows] == kind]
        choice = choose_expert(p, kr, n_splits, seed, family)
        outcomes = not np.isnan(p.weak[kr]).any()
        platt = fit_platt(choice.oof_raw, p.y[kr], None if outcomes else label_prior)
        model = expert_params(fit_candidate(p, kr, choice.chosen))
        experts[kind] = Expert(candidate=choice.chosen.name, model=model, platt=platt, outcomes=outcomes)
        choices[kind] = choice
    gate = fit_gate(p, rows, kinds) if len(kinds) > 1 else None
    return Fit(KindsParams(gate=gate, experts=experts), choices)


# --- honest evaluation ----------------------------------------------------------


@dataclass
class Evaluation:
    oof: np.ndarray  # nested out-of-fold P(needs the large model) of every row (for the operating point)
    chosen: list[dict[str, str]]  # per outer fold: kind -> chosen candidate
    report: dict[str, dict]  # per source: nested, plain CV, length, random, lift


def nested_cv(
    p: Prepared,
    n_outer: int = 5,
    n_inner: int = 4,
    seed: int = 0,
    family: str | None = None,
    label_prior: float = LABEL_PRIOR,
    plain: dict[str, KindChoice] | None = None,
    progress: bool = True,
    repeats: int = 1,
) -> Evaluation:
    """Score every row with a router whose choice and calibration never saw it.

    ``plain`` (the kinds' choices on all rows) adds the plain cross-validated
    figure -- the best candidate on the folds it is scored on -- beside each nested one.
    ``repeats`` > 1 runs it again on other outer splits (seeds ``seed + 1``, ...): on a few
    hundred rows one split's figure moves by several points; the report gives the mean and
    each repeat's figure. The out-of-fold scores (for the operating point) are the first repeat's.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    rows = np.arange(len(p.y))
    length = length_scores(p.texts)
    runs, chosen = [], []
    for r in range(repeats):
        oof, fold = np.zeros(len(rows)), np.zeros(len(rows), dtype=int)
        splits = folds(p, rows, n_outer, seed + r)
        desc = "nested cross-validation" + (f" {r + 1}/{repeats}" if repeats > 1 else "")
        for i, (tr, te) in enumerate(tqdm(splits, desc=desc, unit="fold", disable=not progress)):
            fit = fit_router(p, rows[tr], n_inner, seed + r, family, label_prior)
            oof[te], fold[te] = KindsScorer(fit.params)(p.emb[te], p.feats[te])[0], i
            chosen.append({k: c.chosen.name for k, c in fit.choices.items()})
        # Each outer fold has its own model: compare a source's prompts within their fold (ranks),
        # not across the folds' scales; the length baseline is ranked the same way.
        group = np.char.add(p.src.astype(str), fold.astype(str))
        runs.append((oof, within_group_ranks(oof, group), within_group_ranks(length, group)))
    report = source_report(p, [r[1] for r in runs], [r[2] for r in runs], plain)
    return Evaluation(runs[0][0], chosen, report)


def within_group_ranks(scores: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Each score's rank among the scores of its own group, in (0, 1]."""
    out = np.empty(len(scores))
    for g in np.unique(group):
        m = group == g
        out[m] = rankdata(scores[m]) / m.sum()
    return out


def source_report(
    p: Prepared, runs: list[np.ndarray], lengths: list[np.ndarray], plain: dict[str, KindChoice] | None = None
) -> dict[str, dict]:
    """Per source: the router's figure, prompt length, random, and the lift over length with a 90% interval.

    ``runs`` and ``lengths`` hold one array of scores per repeat of the nested cross-validation
    (router and prompt length, ranked on that repeat's folds): the figures are means over the
    repeats, with each repeat's router figure beside them when there is more than one.
    """
    nested = [evaluate_scores(p, s) for s in runs]
    base = [evaluate_scores(p, b) for b in lengths]
    out: dict[str, dict] = {}
    for key in nested[0]:
        source, metric = key.rsplit(" ", 1)
        m = p.src == source
        row = {"metric": metric, "n": int(m.sum()), "router": float(np.mean([r[key] for r in nested]))}
        row["prompt length"] = float(np.mean([b[key] for b in base]))
        if len(runs) > 1:
            row["router by repeat"] = [r[key] for r in nested]
        if plain is not None:
            table = plain[p.kind[m][0]].table
            row["plain CV (best candidate)"] = max(t[key] for t in table.values() if key in t)
        if metric == "APGR":
            row["random"] = random_baseline(p.weak[m], p.strong[m])["apgr"]
            row["lift over length"] = mean_lift_interval([s[m] for s in runs], [b[m] for b in lengths], p.weak[m], p.strong[m])
        else:
            row["random"] = 0.5
        out[source] = row
    return out


def format_report(report: dict[str, dict]) -> str:
    repeats = max((len(r.get("router by repeat", [0])) for r in report.values()), default=1)
    head = f"{'source':<22}{'metric':>7}{'n':>6}{'nested':>9}{'plain CV':>10}{'length':>9}{'random':>9}   lift over length [90% CI]"
    lines = [head + (f"   nested in each of {repeats} repeats" if repeats > 1 else "")]
    for s, r in report.items():
        lift = r.get("lift over length")
        li = format_lift(lift) if lift else f"{r['router'] - r['prompt length']:+.3f}"
        plain = r.get("plain CV (best candidate)")
        each = "   " + " ".join(f"{v:.3f}" for v in r["router by repeat"]) if "router by repeat" in r else ""
        lines.append(
            f"{s:<22}{r['metric']:>7}{r['n']:>6}{r['router']:>9.3f}{(f'{plain:.3f}' if plain is not None else '-'):>10}"
            f"{r['prompt length']:>9.3f}{r['random']:>9.3f}   {li:<26}{each}".rstrip()
        )
    return "\n".join(lines)


def format_choices(choices: dict[str, KindChoice]) -> str:
    """Each kind's candidates, cross-validated on the same folds (plain CV), the chosen one marked."""
    lines = []
    for kind, ch in choices.items():
        cols = sorted({c for r in ch.table.values() for c in r})
        width = max(26, *(len(name) for name in ch.table))
        lines.append(f"== kind {kind!r}: " + ", ".join(cols))
        for name, r in ch.table.items():
            mark = "  <- chosen" if name == ch.chosen.name else ""
            lines.append(f"   {name:<{width}}" + "".join(f"{r.get(c, float('nan')):>9.3f}" for c in cols) + mark)
    return "\n".join(lines)


# --- operating point --------------------------------------------------------------


def mix_weights(p: Prepared) -> np.ndarray:
    """The default traffic mix: every kind weighs the same, and every source the same within its kind."""
    w = np.zeros(len(p.y))
    kinds = sorted(set(p.kind))
    for k in kinds:
        sources = sorted(set(p.src[p.kind == k]))
        for s in sources:
            m = (p.kind == k) & (p.src == s)
            w[m] = 1.0 / (m.sum() * len(sources) * len(kinds))
    return w


def weighted_quantiles(x: np.ndarray, w: np.ndarray, qs: np.ndarray) -> np.ndarray:
    order = np.argsort(x)
    cw = np.cumsum(w[order])
    cw = (cw - 0.5 * w[order]) / cw[-1]
    return np.interp(qs, cw, x[order])


def choose_threshold(
    p: Prepared, oof: np.ndarray, tier2_share: float | None, recover: float | None, min_source_share: float = 0.0
) -> tuple[float, float]:
    """(threshold, resulting tier-2 share of the default traffic mix).

    With ``min_source_share``, the threshold is lowered where needed so that no source gets a
    smaller tier-2 share than that (a kind whose expert is unsure keeps its probabilities near its
    base rate, and one mix-wide threshold can then send almost none of it to tier 2).
    """
    w = mix_weights(p)
    if recover is not None:
        has = ~np.isnan(p.weak)
        if not has.any():
            raise ValueError("--recover needs data with weak/strong outcomes")
        c = curve(oof[has], p.weak[has], p.strong[has], n_bins=100)
        pgr = c.pgr()
        i = int(np.argmax(pgr >= recover)) if (pgr >= recover).any() else len(pgr) - 1
        threshold = float(c.thresholds[i])
    else:
        share = 0.15 if tier2_share is None else tier2_share
        threshold = float(weighted_quantiles(oof, w, np.array([1.0 - share]))[0])
    if min_source_share > 0:
        floors = [np.quantile(oof[p.src == s], 1.0 - min_source_share, method="inverted_cdf") for s in sorted(set(p.src))]
        threshold = min(threshold, float(min(floors)))
    share = float((w * (oof >= threshold)).sum() / w.sum())
    return threshold, share


def source_shares(p: Prepared, scores: np.ndarray, threshold: float) -> dict[str, float]:
    return {s: float((scores[p.src == s] >= threshold).mean()) for s in sorted(set(p.src))}


def set_operating_point(art: Artifact, scores: np.ndarray, tier2_share: float, traffic: str) -> Artifact:
    """The threshold at the (1 - share) quantile of the user's own traffic's scores."""
    if len(scores) < 20:
        raise ValueError(f"--traffic: {len(scores)} prompts are too few to set a threshold on (need >= 20)")
    threshold = float(np.quantile(scores, 1.0 - tier2_share))
    quantiles = np.maximum.accumulate(np.quantile(scores, np.linspace(0, 1, 101)))
    return art.model_copy(
        update={
            "threshold": threshold,
            "tier2_share": float((scores >= threshold).mean()),
            "score_quantiles": quantiles.tolist(),
            "operating_point": {"traffic": traffic, "prompts": len(scores), "target_tier2_share": tier2_share},
        }
    )


# --- the artifact ------------------------------------------------------------------


def build_artifact(
    p: Prepared,
    embedder: Embedder,
    fit: Fit,
    evaluation: Evaluation,
    tier2_share: float | None = 0.15,
    recover: float | None = None,
    label_prior: float = LABEL_PRIOR,
    min_source_share: float = 0.0,
) -> Artifact:
    """The artifact of ``fit`` (chosen on all rows), its threshold set on the nested out-of-fold scores."""
    emb_c = p.emb[p.y == 1].mean(0) if (p.y == 1).any() else p.emb.mean(0)
    emb_s = p.emb[p.y == 0].mean(0) if (p.y == 0).any() else p.emb.mean(0)
    threshold, share = choose_threshold(p, evaluation.oof, tier2_share, recover, min_source_share)
    quantiles = weighted_quantiles(evaluation.oof, mix_weights(p), np.linspace(0, 1, 101))
    return Artifact(
        embedder=EmbedderInfo(model_id=embedder.model_id, dim=embedder.dim, prefix=embedder.config.prefix),
        centroids={"complex": emb_c.tolist(), "simple": emb_s.tolist()},
        scorer=fit.params,
        threshold=threshold,
        tier2_share=share,
        score_quantiles=np.maximum.accumulate(quantiles).tolist(),
        hybrid=Hybrid(fit={"note": "not fitted: default band, weight and centre (fit them with `tierroute calibrate --router-llm`)"}),
        operating_point={
            "traffic": "calibration mix: every kind weighs the same, every source the same within its kind",
            "kinds": sorted(set(p.kind)),
            "target": ({"tier2_share": tier2_share} if recover is None else {"recover": recover}) | {"min_source_share": min_source_share},
            "tier2_share_by_source": source_shares(p, evaluation.oof, threshold),
        },
        build={
            "tierroute_version": __version__,
            "command": " ".join(shlex.quote(a) for a in sys.argv),
            "chosen": {k: c.chosen.name for k, c in fit.choices.items()},
            "label_prior": label_prior,
            "data": {"checksums": p.ds.checksums, "rows": {s: int((p.src == s).sum()) for s in sorted(set(p.src))}},
            "nested_cross_validation": {"by_source": evaluation.report, "chosen_per_fold": evaluation.chosen},
            "cross_validation": {k: c.table for k, c in fit.choices.items()},
        },
    )
