"""The choice of a kind's expert: cross-validate every candidate, keep the simplest not clearly worse.

Each candidate is cross-validated on the kind's rows (APGR per source with outcomes, ROC AUC per
label-only source; the mean over the kind's sources). The choice prefers the simpler model: the
simplest candidate whose shortfall from the best one is within its margin of bootstrap standard
errors (of two equally simple ones, the better), so a complex model must clearly win to be chosen.

The margin depends on what a candidate would replace. Prompt length, the baseline every router is
judged against, is kept unless the best candidate leads it by ``selection_z(K)`` standard errors:
the best of K estimates that are equal but noisy leads by about ``sqrt(2 ln K)`` of them by chance
alone (2.3 for the 13 candidates of a kind without topics). With one standard error, MATH level 5
and CRUXEval (341 and 390 prompts) got a logistic regression that led length by 0.06-0.08 APGR in
this cross-validation and fell below length and random nested. Between learned candidates, once one
has clearly beaten length, the one-standard-error rule: widened there too, the MMLU kind's inner
selection fell back from the topic expert to a logistic regression in some outer folds, nested 0.647
instead of 0.682 (docs/evaluation.md).
"""


from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from app.calibration.experts import TOPIC_MIN_ROWS, Candidate, candidates, fit_candidate, usable
from app.calibration.metrics import bootstrap, selection_score
from app.calibration.prepared import Prepared, folds, source_figures

SELECTION_BOOT = 200  # bootstrap resamples for the standard error of a candidate's shortfall
SELECTION_Z = 1.0  # the one-standard-error rule between learned candidates; length keeps a wider margin (selection_z)


@dataclass
class KindChoice:
    """The cross-validation of one kind's candidates and the one chosen."""

    chosen: Candidate
    table: dict[str, dict[str, float]]  # candidate -> metric per source, out of fold
    oof_raw: np.ndarray  # the chosen candidate's out-of-fold raw scores on the kind's rows


def _shortfall_se(p: Prepared, rows: np.ndarray, scores: np.ndarray, best: np.ndarray, seed: int) -> float:
    """Bootstrap standard error of ``selection_score(best) - selection_score(scores)`` over the rows."""

    def shortfall(i):
        try:
            a, b = source_figures(p, best[i], rows[i]), source_figures(p, scores[i], rows[i])
        except ValueError:  # a resample without both classes
            return None
        return selection_score(a) - selection_score(b) if a and a.keys() == b.keys() else None

    diffs = bootstrap(len(rows), shortfall, SELECTION_BOOT, seed)
    return float(np.std(diffs)) if len(diffs) > 1 else 0.0


def selection_z(n_candidates: int) -> float:
    """How many standard errors a simpler candidate may fall short of the best and still be kept:
    ``max(SELECTION_Z, sqrt(2 ln K))``, about how far the best of K equal but noisy estimates leads by chance."""
    return max(SELECTION_Z, math.sqrt(2 * math.log(max(n_candidates, 1))))


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
    table = {c.name: source_figures(p, r, rows) for c, r in ranked.items()}
    score = {c: np.nan_to_num(selection_score(table[c.name]), nan=-1.0) for c in oof}
    best = max(oof, key=score.get)
    shortfall_se = {c: 0.0 if c is best else _shortfall_se(p, rows, ranked[c], ranked[best], seed) for c in oof}
    chosen = simplest_near_best(score, shortfall_se)
    return KindChoice(chosen, table, oof[chosen])


def simplest_near_best(score: dict[Candidate, float], shortfall_se: dict[Candidate, float]) -> Candidate:
    """The rule: the simplest candidate within its margin of the best (``selection_z(K)`` standard errors
    of its shortfall for length, one for a learned candidate); of equally simple ones, the better."""
    best = max(score, key=score.get)
    z = selection_z(len(score))

    def near(c: Candidate) -> bool:
        margin = z if c.family == "length" else SELECTION_Z
        return c is best or score[c] >= score[best] - margin * shortfall_se[c]

    return min((c for c in score if near(c)), key=lambda c: (c.rank, -score[c]))


def within_group_ranks(scores: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Each score's rank among the scores of its own group, in (0, 1]."""
    out = np.empty(len(scores))
    for g in np.unique(group):
        m = group == g
        out[m] = rankdata(scores[m]) / m.sum()
    return out


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
