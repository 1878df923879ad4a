"""Every candidate chat expert of the default artifact, measured on open chat with real outcomes.

The default's chat kind learns from permissively licensed prompts only (the
exemplars, Arena-Hard). This script fits each candidate on them exactly as
`tierroute calibrate` does (same folds, same Platt scaling to the label prior),
puts it in the shipped artifact's place, and reports per AlpacaEval pair
(non-commercial: evaluation and selection only, never trained on) the APGR
beside prompt length and random, with the lift over length and its 90%
bootstrap interval, and the ROC AUC on the hand-written chat probe.

    .venv/bin/python scripts/compare_chat_experts.py [--artifact A.json]
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
from sklearn.metrics import roc_auc_score  # noqa: E402

from app.calibration.data import load_file, load_shared_dir  # noqa: E402
from app.calibration.experts import candidates, expert_params, fit_candidate, usable  # noqa: E402
from app.calibration.fit import fit_platt  # noqa: E402
from app.calibration.metrics import length_scores, lift_interval, random_baseline, summarize  # noqa: E402
from app.calibration.prepared import CHAT, folds, prepare  # noqa: E402
from app.routing.artifact import Expert, load_artifact  # noqa: E402
from app.routing.embed import Embedder, EmbedderConfig  # noqa: E402
from app.routing.router import KindsScorer  # noqa: E402
from app.routing.text import feature_matrix  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
PAIRS = ("llama2_7b_vs_70b", "gpt35_vs_gpt4", "mistral7b_vs_mixtral8x7b")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", help="artifact whose chat expert is replaced (default: the shipped one)")
    args = ap.parse_args()
    art = load_artifact(args.artifact)
    embedder = Embedder(EmbedderConfig(model=art.embedder.model_id, prefix=art.embedder.prefix))
    label_prior = float(art.build.get("label_prior", 0.15))
    train = load_shared_dir(DATA).extend(load_file(ROOT / "app/calibration/exemplars/exemplars.jsonl"))
    p = prepare(train, embedder)
    rows = np.where(p.kind == CHAT)[0]
    tests = {name: load_file(DATA / "alpaca_eval" / f"{name}.csv").examples for name in PAIRS}
    tests["chat probe"] = load_file(ROOT / "tests/data/chat_probe.jsonl").examples
    enc = {}
    for name, ex in tests.items():
        texts = [e.text for e in ex]
        enc[name] = (embedder.encode(texts, progress=True), feature_matrix(texts), ex)
    print(f"{'chat expert':<26}" + "".join(f"{n:>34}" for n in PAIRS) + f"{'probe AUC':>11}")
    print(f"{'(APGR; lift over length [90% CI])':<26}")
    splits = folds(p, rows, 5, 0)
    for c in (c for c in candidates() if usable(p, rows, c)):  # label-only chat rows: no topics, no weak_fails
        raw = np.zeros(len(rows))
        for tr, te in splits:
            raw[te] = fit_candidate(p, rows[tr], c).raw(p.emb[rows[te]], p.feats[rows[te]])
        expert = Expert(candidate=c.name, model=expert_params(fit_candidate(p, rows, c)), platt=fit_platt(raw, p.y[rows], label_prior), outcomes=False)
        params = art.scorer.model_copy(deep=True)
        params.experts[CHAT] = expert
        scorer = KindsScorer(params)
        cells = []
        for name in PAIRS:
            emb, feats, ex = enc[name]
            s = scorer(emb, feats)[0]
            w, g = np.array([e.weak for e in ex]), np.array([e.strong for e in ex])
            lift = lift_interval(s, length_scores([e.text for e in ex]), w, g)
            cells.append(f"{summarize(s, w, g)['apgr']:.3f} {lift['lift']:+.3f} [{lift['low']:+.3f},{lift['high']:+.3f}]")
        emb, feats, ex = enc["chat probe"]
        auc = roc_auc_score([e.target for e in ex], scorer(emb, feats)[0])
        mark = " (shipped)" if art.scorer.experts.get(CHAT) and art.scorer.experts[CHAT].candidate == c.name else ""
        print(f"{c.name + mark:<26}" + "".join(f"{x:>34}" for x in cells) + f"{auc:>11.3f}")
    base = []
    for name in PAIRS:
        _, _, ex = enc[name]
        w, g = np.array([e.weak for e in ex]), np.array([e.strong for e in ex])
        base.append(f"length {summarize(length_scores([e.text for e in ex]), w, g)['apgr']:.3f} random {random_baseline(w, g)['apgr']:.3f}")
    print(f"{'baselines':<26}" + "".join(f"{b:>34}" for b in base))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
