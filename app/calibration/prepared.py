"""Everything calibration computes once per dataset, and how it is split and scored.

Every prompt is embedded and its cheap text features computed once (:func:`prepare`). Every
source belongs to a *kind* of traffic (:func:`kind_of`): a source with weak/strong outcomes is a
kind of its own (MMLU-style knowledge questions, GSM8K-style word problems, a user's own traffic;
a second model pair of a source, ``gsm8k:gpt3-6b-vs-175b``, joins the kind before the colon);
label-only sources (simple/complex exemplars, Arena-Hard's one-sided "hard" prompts) together form
the kind ``chat``. Folds are stratified by source and label; a set of scores is judged per source
(:func:`source_figures`: APGR with outcomes, ROC AUC on labels).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import StratifiedKFold

from app.calibration.data import Dataset, Example
from app.calibration.metrics import by_source
from app.routing.embed import Embedder
from app.routing.text import feature_matrix

CHAT = "chat"  # the kind of every label-only source


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


def folds(p: Prepared, rows: np.ndarray, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    strat = np.char.add(p.src[rows].astype(str), p.y[rows].astype(int).astype(str))
    n = max(2, min(n_splits, int(np.unique(strat, return_counts=True)[1].max())))
    return list(StratifiedKFold(n, shuffle=True, random_state=seed).split(rows, strat))


def source_figures(p: Prepared, scores: np.ndarray, rows: np.ndarray | None = None) -> dict[str, float]:
    """:func:`app.calibration.metrics.by_source` of ``scores`` on ``rows`` (all rows when None; ``scores`` align with ``rows``)."""
    rows = np.arange(len(p.y)) if rows is None else rows
    return by_source(scores, p.src[rows], p.weak[rows], p.strong[rows], p.y[rows])
