"""Everything calibration computes once per dataset, and how it is split and scored.

Every prompt is embedded and its cheap text features computed once (:func:`prepare`). Every
source belongs to a *kind* of traffic (:func:`kind_of`): a source with weak/strong outcomes is a
kind of its own (MMLU-style knowledge questions, GSM8K-style word problems, a user's own traffic;
a second model pair of a source, ``gsm8k:gpt3-6b-vs-175b``, joins the kind before the colon);
label-only sources (simple/complex exemplars, Arena-Hard's one-sided "hard" prompts) together form
the kind ``chat``. Embeddings can be kept between runs (:func:`cached_encode`). Folds are stratified by source and label; a set of scores is judged per source
(:func:`source_figures`: APGR with outcomes, ROC AUC on labels).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold
from tqdm.auto import tqdm

from app.calibration.data import Dataset, Example
from app.calibration.metrics import by_source
from app.routing.embed import Embedder, cache_dir
from app.routing.text import feature_matrix

CHAT = "chat"  # the kind of every label-only source
CACHE_SAVE_EVERY = 256  # texts embedded between two writes of the embedding cache (an interrupted run keeps its work)


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


def embedding_cache() -> Path:
    """Where calibration keeps prompt embeddings between runs: ``<tierroute cache>/calibration``."""
    return cache_dir() / "calibration"


def cached_encode(embedder: Embedder, texts: list[str], cache: Path | None, progress: bool = True) -> np.ndarray:
    """``embedder.encode(texts)``, reusing the vectors of texts embedded before with the same model and prefix.

    The cache is one ``.npz`` per model and prefix under ``cache`` (text sha256 -> vector); only the texts it lacks
    are embedded (shortest first), and they are added to it every CACHE_SAVE_EVERY texts, so an interrupted run
    keeps what it embedded. ``cache=None`` embeds everything.
    """
    if cache is None:
        return embedder.encode(texts, progress=progress)
    tag = hashlib.sha256(f"{embedder.model_id}\0{embedder.config.prefix}\0{embedder.dim}".encode()).hexdigest()[:16]
    path = Path(cache) / f"embeddings-{tag}.npz"
    keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
    known: dict[str, np.ndarray] = {}
    if path.is_file():
        with np.load(path) as z:
            known = dict(zip(z["keys"].tolist(), z["emb"]))
    missing = {k: t for k, t in zip(keys, texts) if k not in known}
    todo = sorted(missing, key=lambda k: len(missing[k]))  # shortest first, saved every CACHE_SAVE_EVERY texts
    bar = tqdm(total=len(todo), desc="embedding", unit="prompt", disable=not progress or not todo)
    for start in range(0, len(todo), CACHE_SAVE_EVERY):
        part = todo[start : start + CACHE_SAVE_EVERY]
        known.update(zip(part, embedder.encode([missing[k] for k in part])))
        _save(path, known)
        bar.update(len(part))
    bar.close()
    return np.stack([known[k] for k in keys]).astype(np.float32)


def cached_embedder(model: str | None = None, prefix: str = "", progress: bool = True):
    """(embed, EmbedderInfo): a function embedding texts with ``model`` (default MiniLM) and ``prefix`` through the
    embedding cache (:func:`cached_encode`, :func:`embedding_cache`), and what an artifact records of that embedder."""
    from app.routing.artifact import EmbedderInfo
    from app.routing.embed import DEFAULT_MODEL, EmbedderConfig

    m = Embedder(EmbedderConfig(model=model or DEFAULT_MODEL, prefix=prefix))

    def embed(texts: list[str]) -> np.ndarray:
        return cached_encode(m, texts, embedding_cache(), progress)

    return embed, EmbedderInfo(model_id=m.model_id, dim=m.dim, prefix=prefix)


def _save(path: Path, known: dict[str, np.ndarray]) -> None:
    """Write the cache whole under a temporary name, then rename it (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, keys=np.array(list(known)), emb=np.stack(list(known.values())).astype(np.float32))
    tmp.replace(path)


def prepare(ds: Dataset, embedder: Embedder, progress: bool = True, cache: Path | None = None) -> Prepared:
    """Embed (through the cache in ``cache``, when given) and compute the features of every row."""
    texts = [e.text for e in ds.examples]
    emb = cached_encode(embedder, texts, cache, progress)
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
