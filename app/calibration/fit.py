"""The router fitted on a set of rows: each kind's chosen expert calibrated, and the gate between kinds.

The chosen expert is calibrated (Platt scaling of its out-of-fold raw scores) to the probability
that a prompt needs the large model (``needs_strong``); a label-only kind to P(complex), shifted so
that its mean over the kind's rows is ``label_prior`` (there is no outcome rate to learn). A gate
(multinomial logistic regression) says which kind a prompt resembles; the score is the calibrated
probability of the most likely kind's expert (``top-kind``, the default: prompts of one kind keep
their expert's order) or the gate-weighted mixture of the experts' probabilities (``mixture``, the
old rule), so one threshold means about the same risk in every kind.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from app.calibration.experts import expert_params, fit_candidate
from app.calibration.prepared import Prepared
from app.calibration.selection import KindChoice, choose_expert
from app.routing.artifact import TOP_KIND, Expert, Gate, KindsParams
from app.routing.scorers import sigmoid

GATE_C = 1.0
MIN_PLATT_SLOPE = 0.01  # per standard deviation of the raw score
LABEL_PRIOR = 0.15


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


def logistic_gate(x: np.ndarray, labels, kinds: list[str], C: float = GATE_C, class_weight: str | None = None) -> Gate:
    """A multinomial logistic gate over the rows ``x`` (standardised) labelled with their kinds."""
    sc = StandardScaler().fit(x)
    m = LogisticRegression(C=C, max_iter=3000, class_weight=class_weight).fit(sc.transform(x), labels)
    order = [list(m.classes_).index(k) for k in kinds]
    if len(kinds) == 2:  # sklearn's binary model: logits (0, z) for classes_ (0, 1)
        coef = np.vstack([np.zeros_like(m.coef_[0]), m.coef_[0]])
        intercept = np.array([0.0, m.intercept_[0]])
    else:
        coef, intercept = m.coef_, m.intercept_
    return Gate(kinds=kinds, coef=coef[order].tolist(), intercept=intercept[order].tolist(), mean=sc.mean_.tolist(), scale=sc.scale_.tolist())


def fit_gate(p: Prepared, rows: np.ndarray, kinds: list[str]) -> Gate:
    """The gate over the kinds, each row weighing the same (not each kind: with ``class_weight="balanced"``
    the 341 MATH level-5 problems weighed three times a chat prompt, and short questions no kind was
    calibrated on -- "What is the capital of France?" -- went to ``math-l5``, whose length expert gives
    every prompt its 26% base rate; unweighted, they go to ``chat``. On the calibration rows the two agree
    but for 0.4-0.5% of MMLU and MMLU-Pro and 2 Arena-Hard prompts)."""
    return logistic_gate(np.hstack([p.emb[rows], p.feats[rows]]), p.kind[rows], kinds, GATE_C)


@dataclass
class Fit:
    params: KindsParams
    choices: dict[str, KindChoice]


def fit_router(
    p: Prepared,
    rows: np.ndarray,
    n_splits: int = 5,
    seed: int = 0,
    family: str | None = None,
    label_prior: float = LABEL_PRIOR,
    mixing: str = TOP_KIND,
) -> Fit:
    """Choose and calibrate an expert per kind on ``rows``, and the gate between kinds (``mixing``: see KindsParams)."""
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
    return Fit(KindsParams(gate=gate, experts=experts, mixing=mixing), choices)
