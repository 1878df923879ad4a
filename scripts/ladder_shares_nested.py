"""Held-out figures of a route-mode ladder set for target tier shares (what ``make ladder-artifact`` ships), per source.

The shipped ladder's card reports the shares, quality and cost its thresholds give on the calibration rows, with
out-of-fold scores on the same rows that set the thresholds. This script measures the same recipe nested: the
sources are pooled into one mix as ``calibrate --ladder`` pools them; in each outer fold, per boundary, the scorer
is chosen and fitted on the training rows only (:func:`app.calibration.ladder_eval.fit_boundary`, inner
cross-validation), the thresholds are set for ``--tier-shares`` on the inner out-of-fold scores of the training
rows (:func:`app.routing.ladder.thresholds_for_shares`), and the held-out rows are routed with them. Beside the
embedding router, the same recipe with prompt length and random scores. Per source and pooled: held-out tier
shares, quality (mean score of the answer served), cost relative to all top tier, with 90% bootstrap intervals,
and the paired difference in quality embedding - length and embedding - random.

    PYTHONPATH=$PWD .venv/bin/python scripts/ladder_shares_nested.py --data ../shared/data --sources gsm8k,math_l5,crux \
        --ladder llama-3.1-8b,llama-3.1-70b,gpt-4o --tier-shares 0.6,0.3,0.1 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from sklearn.model_selection import KFold  # noqa: E402

from app.calibration.ladder_eval import SourceInputs, fit_boundary  # noqa: E402
from app.calibration.ladder_policy import outcome, paid  # noqa: E402
from app.calibration.ladder_report import interval  # noqa: E402
from app.calibration.metrics import bootstrap  # noqa: E402
from app.routing.ladder import final_tier, thresholds_for_shares  # noqa: E402

SCORERS = ("embedding", "length", "random")


def load(data: str, sources: list[str], tiers: list[str]) -> SourceInputs:
    from app.calibration.ladder_data import load_ladder
    from app.calibration.ladder_prices import DEFAULT_PRICES, row_costs
    from app.calibration.prepared import cached_encode, embedding_cache
    from app.routing.embed import DEFAULT_MODEL, Embedder, EmbedderConfig

    d = load_ladder([data], tiers, sources)
    costs = row_costs(d.rows, tiers, DEFAULT_PRICES)
    emb = np.asarray(cached_encode(Embedder(EmbedderConfig(model=DEFAULT_MODEL)), [r.prompt for r in d.rows], embedding_cache(), progress=False))
    return SourceInputs(d, {m: costs[:, k] for k, m in enumerate(tiers)}, emb)


def held_out_tiers(inp: SourceInputs, tiers: list[str], scorer: str, shares: list[float], n_outer: int, seed: int) -> np.ndarray:
    """Per row, the tier it is routed to when held out (nested: see the module)."""
    n = len(inp.data.rows)
    out = np.zeros(n, dtype=int)
    for fold, (tr, te) in enumerate(KFold(n_outer, shuffle=True, random_state=seed).split(np.arange(n))):
        s_tr = np.zeros((len(tr), len(tiers) - 1))
        s_te = np.zeros((len(te), len(tiers) - 1))
        for k in range(len(tiers) - 1):
            s_tr[:, k], s_te[:, k], _ = fit_boundary(inp, tiers, k, scorer, tr, te, n_outer - 1, seed, fold)
        out[te] = final_tier(s_te, thresholds_for_shares(s_tr, shares))
    return out


def figures(f: dict[str, np.ndarray], outcomes: np.ndarray, costs: np.ndarray, idx: np.ndarray, n_boot: int, seed: int) -> dict:
    top = costs[idx, -1]
    res = {}
    for name, t in f.items():
        q = outcome(outcomes[idx], t[idx])
        c = paid(costs[idx], t[idx], "route")
        qs = bootstrap(len(idx), lambda b: q[b].mean(), n_boot, seed)
        cs = bootstrap(len(idx), lambda b: c[b].sum() / top[b].sum(), n_boot, seed)
        res[name] = {
            "tier_shares": np.round(np.bincount(t[idx], minlength=costs.shape[1]) / len(idx), 3).tolist(),
            "quality": round(float(q.mean()), 4), "quality_90": [round(x, 4) for x in interval(qs)],
            "cost": round(float(c.sum() / top.sum()), 4), "cost_90": [round(x, 4) for x in interval(cs)],
        }  # fmt: skip
    q_emb = outcome(outcomes[idx], f["embedding"][idx])
    for other in ("length", "random"):
        diff = q_emb - outcome(outcomes[idx], f[other][idx])
        res[f"embedding - {other}"] = {
            "quality": round(float(diff.mean()), 4),
            "quality_90": [round(x, 4) for x in interval(bootstrap(len(idx), lambda b: diff[b].mean(), n_boot, seed))],
        }
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--sources", default="gsm8k,math_l5,crux")
    p.add_argument("--ladder", default="llama-3.1-8b,llama-3.1-70b,gpt-4o")
    p.add_argument("--tier-shares", default="0.6,0.3,0.1")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--json")
    a = p.parse_args()
    from threadpoolctl import threadpool_limits

    tiers, shares = a.ladder.split(","), [float(x) for x in a.tier_shares.split(",")]
    inp = load(a.data, a.sources.split(","), tiers)
    with threadpool_limits(1):
        f = {s: held_out_tiers(inp, tiers, s, shares, a.folds, a.seed) for s in SCORERS}
    outcomes = np.stack([inp.score(m) for m in tiers], axis=1)
    costs = np.stack([inp.costs[m] for m in tiers], axis=1)
    src = np.array([r.source for r in inp.data.rows])
    report = {"ladder": tiers, "tier_shares": shares, "folds": a.folds, "seed": a.seed, "sources": {}}
    for name in [*sorted(set(src)), "pooled"]:
        idx = np.arange(len(src)) if name == "pooled" else np.flatnonzero(src == name)
        r = figures(f, outcomes, costs, idx, a.bootstrap, a.seed)
        r["fixed"] = {m: {"quality": round(float(outcomes[idx, k].mean()), 4), "cost": round(float(costs[idx, k].sum() / costs[idx, -1].sum()), 4)} for k, m in enumerate(tiers)}
        r["n"] = int(len(idx))
        report["sources"][name] = r
        print(f"{name} (n={len(idx)}): fixed " + "; ".join(f"{m} {v['quality']:.3f} at {v['cost']:.3f}" for m, v in r["fixed"].items()))
        for s in SCORERS:
            v = r[s]
            print(f"  {s:9s} shares {v['tier_shares']} quality {v['quality']:.3f} [{v['quality_90'][0]:.3f}, {v['quality_90'][1]:.3f}]"
                  f" cost {v['cost']:.3f} [{v['cost_90'][0]:.3f}, {v['cost_90'][1]:.3f}]")  # fmt: skip
        for o in ("length", "random"):
            v = r[f"embedding - {o}"]
            print(f"  embedding - {o}: quality {v['quality']:+.3f} [{v['quality_90'][0]:+.3f}, {v['quality_90'][1]:+.3f}]")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
