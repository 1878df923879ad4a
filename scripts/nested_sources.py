"""Calibration's selection and nested figures on some of the default data's sources, without building an artifact.

Loads what `make artifact` reads (../shared/data with the Llama-3.1 pair files, and the exemplars), keeps the
sources named by ``--sources`` (exact names or ``kind:`` prefixes, e.g. ``gsm8k`` ``math-l5:`` ``crux:``), and
runs what ``tierroute calibrate`` runs on them: every kind's candidates cross-validated (the chosen one
marked), then the nested cross-validation per source -- router (both mixing rules, on the same fits),
prompt length, random, and the lift over length with its 90% bootstrap interval. Embeddings come from the
calibration cache (``~/.cache/tierroute/calibration``), so a run after ``make artifact`` embeds nothing.

    PYTHONPATH=$PWD .venv/bin/python scripts/nested_sources.py --sources gsm8k math-l5: crux: [--repeats 3]
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

from app.calibration.data import Dataset, load_file, load_shared_dir  # noqa: E402
from app.calibration.fit import fit_router  # noqa: E402
from app.calibration.nested import format_nested, nested_cv  # noqa: E402
from app.calibration.prepared import embedding_cache, prepare  # noqa: E402
from app.calibration.selection import format_choices  # noqa: E402
from app.routing.embed import DEFAULT_MODEL, Embedder, EmbedderConfig  # noqa: E402

EXEMPLARS = ROOT / "app/calibration/exemplars/exemplars.jsonl"


def wanted(source: str, names: list[str]) -> bool:
    return any(source == n or (n.endswith(":") and (source + ":").startswith(n)) for n in names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--sources", nargs="+", required=True, help="source names, or 'kind:' for every source of a kind")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    ds = load_shared_dir(args.data).extend(load_file(EXEMPLARS))
    ds = Dataset([e for e in ds.examples if wanted(e.source, args.sources)], ds.checksums)
    if not ds.examples:
        raise SystemExit(f"--sources {args.sources}: none of them is in the data")
    print(f"{len(ds)} prompts from {', '.join(ds.sources())}", flush=True)
    p = prepare(ds, Embedder(EmbedderConfig(model=DEFAULT_MODEL, num_threads=1)), cache=embedding_cache())
    fit = fit_router(p, np.arange(len(p.y)), args.folds, args.seed)
    print(format_choices(fit.choices), flush=True)
    ev = nested_cv(p, args.folds, args.folds - 1, args.seed, plain=fit.choices, repeats=args.repeats)
    print(f"\nnested cross-validation, mixing {fit.params.mixing!r} ({args.repeats} outer split(s)):")
    print(format_nested(ev.report))
    print(f"\nthe same fits, mixing {ev.other_mixing['mixing']!r}:")
    print(format_nested(ev.other_mixing["by_source"]))


if __name__ == "__main__":
    main()
