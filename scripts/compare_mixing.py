"""The gate's two ways of making one score, measured nested on the same folds and fits.

``mixture`` (score = sum over kinds of P(kind) * the kind's expert, artifacts before the ``mixing``
field) against ``top-kind`` (the expert of the most likely kind): each outer fold's router is fitted
once (choice, calibration and gate never see the fold), both rules score the fold, and the report per
source is the nested one of ``tierroute calibrate`` (router, prompt length, random, lift over length
with its 90% bootstrap interval), once per rule. The data is what ``make artifact`` reads (plus
``--arena-bench`` pairs when named); embeddings come from the calibration cache.

    PYTHONPATH=$PWD .venv/bin/python scripts/compare_mixing.py [--repeats 3] [--arena-bench gpt35_vs_gpt4 ...]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from app.calibration.data import load_file, load_shared_dir  # noqa: E402
from app.calibration.fit import fit_router  # noqa: E402
from app.calibration.metrics import length_scores  # noqa: E402
from app.calibration.nested import format_nested, source_report  # noqa: E402
from app.calibration.prepared import embedding_cache, folds, prepare  # noqa: E402
from app.calibration.selection import within_group_ranks  # noqa: E402
from app.routing.artifact import MIXTURE, TOP_KIND  # noqa: E402
from app.routing.embed import DEFAULT_MODEL, Embedder, EmbedderConfig  # noqa: E402
from app.routing.router import KindsScorer  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
EXEMPLARS = ROOT / "app/calibration/exemplars/exemplars.jsonl"
RULES = (MIXTURE, TOP_KIND)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--arena-bench", nargs="*", default=[], help="arena_bench_v1 pairs to add as a kind (default none)")
    args = ap.parse_args()
    ds = load_shared_dir(args.data, arena_bench=tuple(args.arena_bench)).extend(load_file(EXEMPLARS))
    p = prepare(ds, Embedder(EmbedderConfig(model=DEFAULT_MODEL)), cache=embedding_cache())
    rows, length = np.arange(len(p.y)), length_scores(p.texts)
    runs: dict[str, list] = {r: [] for r in RULES}
    lengths = []
    for r in range(args.repeats):
        oof = {rule: np.zeros(len(rows)) for rule in RULES}
        fold = np.zeros(len(rows), dtype=int)
        for i, (tr, te) in enumerate(tqdm(folds(p, rows, args.folds, r), desc=f"nested {r + 1}/{args.repeats}", unit="fold")):
            params = fit_router(p, rows[tr], args.folds - 1, r).params
            for rule in RULES:
                oof[rule][te] = KindsScorer(params.model_copy(update={"mixing": rule}))(p.emb[te], p.feats[te])[0]
            fold[te] = i
        group = np.char.add(p.src.astype(str), fold.astype(str))
        for rule in RULES:
            runs[rule].append(within_group_ranks(oof[rule], group))
        lengths.append(within_group_ranks(length, group))
    for rule in RULES:
        print(f"\n== mixing {rule!r}: nested cross-validation, {args.repeats} repeats")
        print(format_nested(source_report(p, runs[rule], lengths)))


if __name__ == "__main__":
    main()
