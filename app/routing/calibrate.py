"""Build a calibration artifact from labelled prompts.

1. Embed every prompt; compute cheap text features.
2. Cross-validate each scorer family (centroid, logistic regression, kNN +
   length) over a small grid, with the same folds for all. Rows with weak/strong
   outcomes are scored by APGR per source; label-only rows by ROC AUC.
3. Add blends of the best kNN and the best logistic candidate; keep the
   candidate with the best mean per-source metric, refit on all rows.
4. Pick the threshold from the chosen scorer's *out-of-fold* scores (in-sample
   kNN scores would be optimistic): for a target share of tier-2 traffic, or for
   the smallest share that recovers a target share of the quality gap. Every
   source weighs the same in these quantiles, so MMLU's 4,000 rows do not set
   the threshold for chat traffic alone.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from app import __version__
from app.routing.artifact import (
    Artifact,
    B64Array,
    BlendParams,
    CentroidParams,
    EmbedderInfo,
    Hybrid,
    KnnParams,
    LogisticParams,
)
from app.routing.data import Dataset
from app.routing.embed import Embedder
from app.routing.metrics import curve, length_scores, summarize
from app.routing.scorers import WORDS, KnnScorer, LogisticScorer, blend_scores, centroid_score
from app.routing.text import feature_matrix

KNN_GRID = [(k, b) for k in (30, 100, 200) for b in (0.0, 0.25, 0.5, 1.0)]
KNN_TEMPERATURE = 10.0
LOGISTIC_GRID = (0.01, 0.1)
BLEND_WEIGHTS = (0.3, 0.5)


@dataclass
class Table:
    """CV results: candidate name -> {source: metric}."""

    rows: dict[str, dict[str, float]] = field(default_factory=dict)

    def add(self, name: str, metrics: dict[str, float]) -> None:
        self.rows[name] = metrics

    def format(self) -> str:
        cols = sorted({c for r in self.rows.values() for c in r})
        width = max(map(len, self.rows)) + 2
        lines = ["candidate".ljust(width) + "".join(c.rjust(16) for c in cols)]
        for name, r in self.rows.items():
            lines.append(name.ljust(width) + "".join((f"{r[c]:.3f}" if c in r else "-").rjust(16) for c in cols))
        return "\n".join(lines)


@dataclass
class Prepared:
    """Everything calibration computes once per dataset."""

    ds: Dataset
    emb: np.ndarray
    feats: np.ndarray
    y: np.ndarray
    src: np.ndarray
    weak: np.ndarray  # nan where a row has no outcomes
    strong: np.ndarray


def prepare(ds: Dataset, embedder: Embedder, progress: bool = True) -> Prepared:
    texts = [e.text for e in ds.examples]
    emb = embedder.encode(texts, progress=progress)
    nan = float("nan")
    return Prepared(
        ds,
        emb,
        feature_matrix(texts),
        np.array([e.target for e in ds.examples], dtype=np.float32),
        np.array([e.source for e in ds.examples]),
        np.array([e.weak if e.has_outcomes else nan for e in ds.examples], dtype=float),
        np.array([e.strong if e.has_outcomes else nan for e in ds.examples], dtype=float),
    )


def evaluate_scores(p: Prepared, scores: np.ndarray) -> dict[str, float]:
    """APGR per source with outcomes, ROC AUC per label-only source with both classes."""
    out = {}
    for s in sorted(set(p.src)):
        m = p.src == s
        if not np.isnan(p.weak[m]).any() and p.weak[m].mean() != p.strong[m].mean():
            out[f"{s} APGR"] = summarize(scores[m], p.weak[m], p.strong[m])["apgr"]
        elif len(set(p.y[m])) == 2:
            out[f"{s} AUC"] = float(roc_auc_score(p.y[m], scores[m]))
    return out


def selection_score(metrics: dict[str, float]) -> float:
    """Mean over sources of APGR (outcome data) or ROC AUC (label-only data).

    Both are 0.5 for a random router and 1.0 for a perfect ranking, so every
    source -- MMLU-style, GSM8K-style, chat exemplars -- weighs the same.
    """
    return float(np.mean(list(metrics.values()))) if metrics else float("nan")


def folds(p: Prepared, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    strat = np.char.add(p.src.astype(str), p.y.astype(int).astype(str))
    return list(StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(p.emb, strat))


def _length_stats(feats: np.ndarray) -> tuple[float, float]:
    col = feats[:, WORDS]
    return float(col.mean()), float(col.std() or 1.0)


def fit_logistic(p: Prepared, rows: np.ndarray, C: float) -> LogisticScorer:
    a = np.hstack([p.emb[rows], p.feats[rows]])
    sc = StandardScaler().fit(a)
    m = LogisticRegression(C=C, max_iter=3000).fit(sc.transform(a), p.y[rows])
    return LogisticScorer(m.coef_[0], float(m.intercept_[0]), sc.mean_, sc.scale_)


def fit_knn(p: Prepared, rows: np.ndarray, k: int, beta: float) -> KnnScorer:
    mean, std = _length_stats(p.feats[rows])
    return KnnScorer(p.emb[rows], p.y[rows], k, KNN_TEMPERATURE, beta, mean, std)


def centroids(p: Prepared, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = p.y[rows]
    if y.min() == y.max():
        raise ValueError("calibration data needs both simple and complex (or needs_strong) examples")
    return p.emb[rows][y == 1].mean(0), p.emb[rows][y == 0].mean(0)


def candidates(p: Prepared) -> dict[str, tuple[dict, Callable[[np.ndarray, np.ndarray], np.ndarray]]]:
    """name -> (spec, fit on train rows and score test rows)."""
    out: dict[str, tuple[dict, Callable]] = {}

    def centroid(tr, te):
        c, s = centroids(p, tr)
        return centroid_score(p.emb[te], c, s)

    out["centroid"] = ({"family": "centroid"}, centroid)
    for C in LOGISTIC_GRID:
        out[f"logistic C={C}"] = (
            {"family": "logistic", "C": C},
            lambda tr, te, C=C: fit_logistic(p, tr, C).score(p.emb[te], p.feats[te]),
        )
    for k, b in KNN_GRID:
        out[f"knn k={k} length={b}"] = (
            {"family": "knn", "k": k, "length": b},
            lambda tr, te, k=k, b=b: fit_knn(p, tr, k, b).score(p.emb[te], p.feats[te]),
        )
    return out


def cross_validate(p: Prepared, n_splits: int = 5, seed: int = 0, progress: bool = True):
    """Out-of-fold scores, metrics and specs of every candidate, plus the baselines.

    Blends combine the best kNN and the best logistic candidate on the logit
    scale: kNN carries topic and length, the linear model generalises better
    to chat prompts far from any calibration neighbour.
    """
    table, oof_all, specs = Table(), {}, {}
    cands = candidates(p)
    splits = folds(p, n_splits, seed)
    bar = tqdm(total=len(cands) * len(splits), desc="cross-validating", unit="fit", disable=not progress)
    for name, (spec, fit) in cands.items():
        oof = np.zeros(len(p.y))
        for tr, te in splits:
            oof[te] = fit(tr, te)
            bar.update()
        oof_all[name], specs[name] = oof, spec
        table.add(name, evaluate_scores(p, oof))
    bar.close()
    best = {f: max((n for n in specs if specs[n]["family"] == f), key=lambda n: selection_score(table.rows[n])) for f in ("knn", "logistic")}
    for w in BLEND_WEIGHTS:
        name = f"blend {best['knn']} + {best['logistic']} w={w}"
        oof_all[name] = blend_scores(oof_all[best["knn"]], oof_all[best["logistic"]], w)
        specs[name] = {"family": "blend", "knn": specs[best["knn"]], "logistic": specs[best["logistic"]], "weight": w}
        table.add(name, evaluate_scores(p, oof_all[name]))
    table.add("baseline: prompt length", evaluate_scores(p, length_scores([e.text for e in p.ds.examples])))
    rng = np.random.default_rng(seed)
    rand = [evaluate_scores(p, rng.random(len(p.y))) for _ in range(20)]
    table.add("baseline: random (mean of 20)", {k: float(np.mean([r[k] for r in rand])) for k in rand[0]})
    return table, oof_all, specs


def source_weights(src: np.ndarray) -> np.ndarray:
    """Each source weighs the same in aggregate traffic statistics."""
    names, counts = np.unique(src, return_counts=True)
    per = dict(zip(names, 1.0 / (counts * len(names))))
    return np.array([per[s] for s in src])


def weighted_quantiles(x: np.ndarray, w: np.ndarray, qs: np.ndarray) -> np.ndarray:
    order = np.argsort(x)
    cw = np.cumsum(w[order])
    cw = (cw - 0.5 * w[order]) / cw[-1]
    return np.interp(qs, cw, x[order])


def choose_threshold(
    p: Prepared, oof: np.ndarray, tier2_share: float | None, recover: float | None
) -> tuple[float, float]:
    """(threshold, resulting tier-2 share of equally weighted calibration traffic)."""
    w = source_weights(p.src)
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
    share = float((w * (oof >= threshold)).sum() / w.sum())
    return threshold, share


def _knn_params(p: Prepared, spec: dict) -> KnnParams:
    knn = fit_knn(p, np.arange(len(p.y)), spec["k"], spec["length"])
    return KnnParams(
        k=knn.k, temperature=KNN_TEMPERATURE, length_weight=knn.length_weight, length_mean=knn.length_mean,
        length_std=knn.length_std, reference=B64Array.of(p.emb, "float16"), labels=B64Array.of(p.y, "int8"),
    )  # fmt: skip


def _logistic_params(p: Prepared, spec: dict) -> LogisticParams:
    lr = fit_logistic(p, np.arange(len(p.y)), spec["C"])
    return LogisticParams(coef=lr.coef.tolist(), intercept=lr.intercept, mean=lr.mean.tolist(), scale=lr.scale.tolist())


def build_artifact(
    p: Prepared,
    embedder: Embedder,
    table: Table,
    oof_all: dict[str, np.ndarray],
    specs: dict[str, dict],
    tier2_share: float | None = 0.15,
    recover: float | None = None,
    family: str | None = None,
    hybrid: Hybrid | None = None,
) -> Artifact:
    """Refit the best candidate (or the best of ``family``) on all rows and pick the threshold."""
    names = [n for n in oof_all if family is None or specs[n]["family"] == family]
    if not names:
        raise ValueError(f"--family {family!r}: no such candidate (centroid, logistic, knn, blend)")
    best = max(names, key=lambda n: np.nan_to_num(selection_score(table.rows[n]), nan=-1.0))
    spec = specs[best]
    c, s = centroids(p, np.arange(len(p.y)))
    if spec["family"] == "knn":
        params = _knn_params(p, spec)
    elif spec["family"] == "logistic":
        params = _logistic_params(p, spec)
    elif spec["family"] == "blend":
        params = BlendParams(knn=_knn_params(p, spec["knn"]), logistic=_logistic_params(p, spec["logistic"]), weight=spec["weight"])
    else:
        params = CentroidParams()
    oof = oof_all[best]
    threshold, share = choose_threshold(p, oof, tier2_share, recover)
    quantiles = weighted_quantiles(oof, source_weights(p.src), np.linspace(0, 1, 101))
    return Artifact(
        embedder=EmbedderInfo(model_id=embedder.model_id, dim=embedder.dim, prefix=embedder.config.prefix),
        centroids={"complex": c.tolist(), "simple": s.tolist()},
        scorer=params,
        threshold=threshold,
        tier2_share=share,
        score_quantiles=np.maximum.accumulate(quantiles).tolist(),
        hybrid=hybrid or Hybrid(),
        build={
            "tierroute_version": __version__,
            "command": " ".join(shlex.quote(a) for a in sys.argv),
            "chosen": best,
            "target": {"tier2_share": tier2_share} if recover is None else {"recover": recover},
            "data": {"checksums": p.ds.checksums, "rows": {s: int((p.src == s).sum()) for s in sorted(set(p.src))}},
            "cross_validation": table.rows,
        },
    )
