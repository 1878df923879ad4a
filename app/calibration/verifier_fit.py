"""Fit a verifier from answer rows: per kind, the candidate nested cross-validation chooses.

Candidates (:func:`candidates`) differ in what they read -- the answer's text features, plus the
request's length and step counts, plus the execution check (where a request asks what its code returns),
plus log-probability features where every row has them, plus the
embedding of the answer's end -- in their form (``needs_strong``: one logistic model of "tier 1 wrong
and tier 2 right"; ``product``: P(tier 1 wrong) x P(tier 2 right), two models) and in their
regularisation ``C``. Within a kind the choice is made on inner folds (:func:`choose`); ties go to the
earlier, simpler candidate. The gate (answer -> kind) is a multinomial logistic model over the
answer's format, so text added to a request cannot move it to another kind's expert.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from app.calibration.answers import AnswerRow
from app.calibration.metrics import apgr, curve
from app.calibration.fit import logistic_gate
from app.routing.artifact import Gate
from app.verification.artifact import Logit, VerifierExpert
from app.verification.features import ANSWER_KIND_FEATURES, EXEC_FEATURES, LOGPROB_FEATURES, REQUEST_ALL, TEXT_FEATURES
from app.verification.verifier import answer_features, expert_probability

C_GRID = (0.01, 0.03, 0.1, 0.3)
# tier 2's model over the request's standardised embedding (384 dimensions): far stronger regularisation
STRONG_EMBEDDING_C = (0.0001, 0.0003)
# a kind with fewer training rows never tries embedding candidates (prefer the simpler model on small sources:
# on GSM8K, MATH level 5 and CRUXEval, a few hundred rows each, inner selection picked them by chance and lost)
MIN_EMBEDDING_ROWS = 1000


@dataclass(frozen=True)
class Candidate:
    features: tuple[str, ...]
    form: str  # needs_strong | product
    C: float
    embedding: str = "none"
    name: str = ""
    strong_input: str = "same"  # product: tier 2's model reads the same row, or the request's embedding alone
    strong_C: float | None = None  # tier 2's model's regularisation (None: C)

    @property
    def embeds(self) -> bool:
        return self.embedding != "none" or self.strong_input == "request"


def candidates(with_logprobs: bool, with_embedding: bool) -> list[Candidate]:
    """Simplest first: text features alone, then with the request's, the execution check, log-probabilities; with
    ``with_embedding``, then tier 2's model over the request's embedding, and the answer's embedding."""
    sets = [("text", TEXT_FEATURES), ("text+request", TEXT_FEATURES + REQUEST_ALL), ("text+execution", TEXT_FEATURES + EXEC_FEATURES),
            ("text+request+execution", TEXT_FEATURES + REQUEST_ALL + EXEC_FEATURES)]  # fmt: skip
    if with_logprobs:
        sets.append(("text+request+execution+logprobs", TEXT_FEATURES + REQUEST_ALL + EXEC_FEATURES + LOGPROB_FEATURES))
    out = []
    for name, feats in sets:
        for form in ("needs_strong", "product"):
            for C in C_GRID:
                out.append(Candidate(feats, form, C, "none", f"{form} {name} C={C}"))
    if with_embedding:
        for name, feats in sets:  # P(tier 1 wrong) from the answer x P(tier 2 right) from the request's embedding
            for C in (0.1, 0.3):
                for sc in STRONG_EMBEDDING_C:
                    out.append(Candidate(feats, "product", C, "none", f"product {name} C={C} x request embedding C={sc}", "request", sc))
        feats = sets[-1][1]
        for form in ("needs_strong", "product"):
            for C in (0.01, 0.03):
                out.append(Candidate(feats, form, C, "answer", f"{form} {sets[-1][0]}+answer embedding C={C}"))
    return out


@dataclass
class Design:
    """The rows of one kind, as every candidate reads them."""

    feats: list[dict[str, float]]
    emb: np.ndarray | None  # the answer's-end embeddings (None without an embedder)
    weak: np.ndarray
    strong: np.ndarray
    request_emb: np.ndarray | None = None  # the requests' embeddings (None without an embedder)

    @classmethod
    def of(cls, rows: list[AnswerRow], emb: np.ndarray | None, request_emb: np.ndarray | None = None) -> "Design":
        w = np.array([r.weak for r in rows], dtype=float)
        s = np.array([r.strong for r in rows], dtype=float)
        return cls([answer_features(r.answer, execute=True) for r in rows], emb, w, s, request_emb)

    @property
    def needs_strong(self) -> np.ndarray:
        return (self.weak < self.strong).astype(int)

    def matrix(self, c: Candidate, idx: np.ndarray) -> np.ndarray:
        x = np.array([[self.feats[i].get(f, 0.0) for f in c.features] for i in idx], dtype=np.float64)
        if c.embedding != "none":
            x = np.hstack([x, self.emb[idx].astype(np.float64)])
        return x

    def strong_matrix(self, c: Candidate, idx: np.ndarray) -> np.ndarray:
        """What tier 2's model reads: the requests' embeddings, or the candidate's own rows."""
        return self.request_emb[idx].astype(np.float64) if c.strong_input == "request" else self.matrix(c, idx)


def fit_logit(x: np.ndarray, y: np.ndarray, C: float) -> Logit:
    mean, scale = x.mean(0), x.std(0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    if len(set(y)) < 2:  # one class only: a constant model
        p = min(max(float(np.mean(y)), 1e-4), 1 - 1e-4)
        return Logit(coef=[0.0] * x.shape[1], intercept=float(np.log(p / (1 - p))), mean=mean.tolist(), scale=scale.tolist())
    m = LogisticRegression(C=C, max_iter=5000).fit((x - mean) / scale, y)
    return Logit(coef=m.coef_[0].tolist(), intercept=float(m.intercept_[0]), mean=mean.tolist(), scale=scale.tolist())


def fit_expert(c: Candidate, d: Design, idx: np.ndarray) -> VerifierExpert:
    x = d.matrix(c, idx)
    if c.form == "product":
        model = fit_logit(x, (d.weak[idx] < 0.5).astype(int), c.C)
        strong = fit_logit(d.strong_matrix(c, idx), (d.strong[idx] >= 0.5).astype(int), c.C if c.strong_C is None else c.strong_C)
    else:
        model, strong = fit_logit(x, d.needs_strong[idx], c.C), None
    return VerifierExpert(
        candidate=c.name, features=list(c.features), embedding=c.embedding, form=c.form, model=model, strong=strong, strong_input=c.strong_input
    )


def expert_scores(e: VerifierExpert, c: Candidate, d: Design, idx: np.ndarray) -> np.ndarray:
    return expert_probability(e, d.matrix(c, idx), d.strong_matrix(c, idx) if c.strong_input == "request" else None)


def apgr_of(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> float:
    return apgr(curve(scores, weak, strong)) if weak.mean() != strong.mean() else 0.5


def choose(cands: list[Candidate], d: Design, idx: np.ndarray, n_inner: int, seed: int) -> tuple[Candidate, dict[str, float]]:
    """The candidate with the best inner cross-validated APGR on rows ``idx`` (ties: the earlier one); with fewer
    than :data:`MIN_EMBEDDING_ROWS` rows, none that embeds."""
    if len(idx) < MIN_EMBEDDING_ROWS:
        cands = [c for c in cands if not c.embeds] or cands
    y = d.needs_strong[idx]
    k = max(2, min(n_inner, int(y.sum()), int(len(y) - y.sum())))
    splits = list(StratifiedKFold(k, shuffle=True, random_state=seed).split(idx, y))
    table = {}
    for c in cands:
        oof = np.zeros(len(idx))
        for tr, te in splits:
            oof[te] = expert_scores(fit_expert(c, d, idx[tr]), c, d, idx[te])
        table[c.name] = apgr_of(oof, d.weak[idx], d.strong[idx])
    best = max(cands, key=lambda c: (round(table[c.name], 4), -cands.index(c)))
    return best, table


def fit_gate(answers: list, kinds: list[str]) -> Gate:
    """The answer's format (:data:`ANSWER_KIND_FEATURES`) -> kind (multinomial logistic, C=1)."""
    x = np.array([[f[n] for n in ANSWER_KIND_FEATURES] for f in map(answer_features, answers)], dtype=np.float64)
    return logistic_gate(x, kinds, sorted(set(kinds)), C=1.0)
