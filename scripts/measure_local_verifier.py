"""How well do tier 1's own log-probabilities tell its right answers from wrong ones? Measured on the local tier 1.

The local default's tier 1 (SmolLM2-135M-Instruct, ``models/smollm2-135m-instruct`` from ``make setup``)
answers every item of the gold task (app/verification/tasks/arithmetic.jsonl, :mod:`app.verification.gold`)
through the vLLM Python API on the CPU, greedy, with the sampled token's log-probability; each answer is
graded against the gold one. The script then prints, for predicting a *wrong* answer (what the verifier
escalates), the AUROC of every log-probability feature (:func:`app.verification.features.logprob_features`,
low = unsure, so the AUROC of minus the feature) and of every text feature (as is: above 0.5 means a higher
value goes with wrong answers), each with a bootstrap interval over the items, and of logistic regressions
on each family and on both (5-fold cross-validated predictions). It draws the score histogram and ROC curves
into a PNG.

The answers are cached (``--answers``): a rerun on the same items only recomputes the figures;
``--regenerate`` asks again.

    .venv/bin/python scripts/measure_local_verifier.py [--limit N] [--png docs/img/local_verifier_smollm2.png]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from app.verification.features import LOGPROB_FEATURES, TEXT_FEATURES, logprob_features, text_features  # noqa: E402
from app.verification.gold import grade  # noqa: E402

TASK = ROOT / "app/verification/tasks/arithmetic.jsonl"
MODEL = ROOT / "models/smollm2-135m-instruct"
LP_SHOWN = ("lp_mean", "lp_min", "lp_q05", "lp_q10", "lp_q25", "lp_median", "lp_final_mean")


def answer_all(items: list[dict], model: Path, max_tokens: int) -> list[dict]:
    """Tier 1's greedy answer to every item, with each generated token's text and log-probability."""
    from vllm import LLM, SamplingParams

    llm = LLM(
        model=str(model), enforce_eager=True, max_model_len=2048, dtype="float32",
        kv_cache_memory_bytes=256 << 20, max_logprobs=20, seed=0,
    )  # fmt: skip
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, logprobs=0)
    start = time.perf_counter()
    outs = llm.chat([[{"role": "user", "content": it["question"]}] for it in items], params, use_tqdm=True)
    took = time.perf_counter() - start
    rows = []
    for it, o in zip(items, outs):
        c = o.outputs[0]
        chosen = [d[t] for d, t in zip(c.logprobs, c.token_ids)]
        rows.append({
            **it, "answer": c.text, "answer_logprobs": [round(x.logprob, 4) for x in chosen],
            "answer_tokens": [x.decoded_token or "" for x in chosen], "finish_reason": c.finish_reason,
        })  # fmt: skip
    print(f"answered {len(items)} items in {took:.1f} s ({sum(len(r['answer_logprobs']) for r in rows) / took:.1f} tokens/s)")
    return rows


def rank_auroc(y: np.ndarray, s: np.ndarray) -> float:
    """AUROC by the rank-sum (Mann-Whitney) formula, ties counted half: equal to sklearn's roc_auc_score,
    and fast enough to run thousands of times in the bootstrap."""
    from scipy.stats import rankdata

    pos = int(y.sum())
    return float((rankdata(s)[y == 1].sum() - pos * (pos + 1) / 2) / (pos * (len(y) - pos)))


def within_auroc(y: np.ndarray, s: np.ndarray, cells: np.ndarray) -> float | None:
    """AUROC over the pairs of a wrong and a right answer to items of the same kind and level only: what
    a score tells apart beyond which kind of question it is (pooled over cells, weighted by pairs)."""
    num = den = 0.0
    for c in np.unique(cells):
        m = cells == c
        pos = int(y[m].sum())
        pairs = pos * (int(m.sum()) - pos)
        if pairs:
            num += rank_auroc(y[m], s[m]) * pairs
            den += pairs
    return num / den if den else None


def auroc_row(name: str, y: np.ndarray, s: np.ndarray, cells: np.ndarray, n_boot: int) -> dict:
    """AUROC of ``s`` for ``y`` (1 = wrong) over all items and within kind-and-level cells, each with a
    95% bootstrap interval over the items (the same resamples for both)."""
    from sklearn.metrics import roc_auc_score

    def stat(idx):
        if not 0 < y[idx].sum() < len(idx):
            return None
        w = within_auroc(y[idx], s[idx], cells[idx])
        return (rank_auroc(y[idx], s[idx]), np.nan if w is None else w)

    rng = np.random.default_rng(0)
    boot = np.array([v for v in (stat(rng.integers(0, len(y), len(y))) for _ in range(n_boot)) if v is not None])
    (lo, wlo), (hi, whi) = np.nanquantile(boot, [0.025, 0.975], axis=0)
    return {
        "name": name, "auroc": float(roc_auc_score(y, s)), "lo": float(lo), "hi": float(hi),
        "within": within_auroc(y, s, cells), "wlo": float(wlo), "whi": float(whi),
    }  # fmt: skip


def cv_scores(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Out-of-fold P(wrong) from a standardised logistic regression, 5 stratified folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000))
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    return cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]


def feature_matrix(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    lp = np.array([[logprob_features(r["answer_logprobs"], r["answer_tokens"])[k] for k in LOGPROB_FEATURES] for r in rows])
    tx = np.array([[text_features(r["question"], r["answer"])[k] for k in TEXT_FEATURES] for r in rows])
    return lp, tx


def measure(rows: list[dict], n_boot: int) -> tuple[list[dict], dict]:
    """AUROC rows (features, then the cross-validated combinations) and the scores the figure draws."""
    wrong = np.array([not r["correct"] for r in rows], dtype=int)
    cells = np.array([f"{r['kind']}-{r['level']}" for r in rows])
    lp, tx = feature_matrix(rows)
    table = [auroc_row(k, wrong, -lp[:, LOGPROB_FEATURES.index(k)], cells, n_boot) for k in LP_SHOWN]
    for j, k in enumerate(TEXT_FEATURES):
        if np.ptp(tx[:, j]) > 0:
            table.append(auroc_row(f"text:{k}", wrong, tx[:, j], cells, n_boot))
    combos = {"logistic(lp, CV)": cv_scores(lp, wrong), "logistic(text, CV)": cv_scores(tx, wrong)}
    combos["logistic(lp+text, CV)"] = cv_scores(np.hstack([lp, tx]), wrong)
    table += [auroc_row(k, wrong, s, cells, n_boot) for k, s in combos.items()]
    shown = {k: -lp[:, LOGPROB_FEATURES.index(k)] for k in ("lp_mean", "lp_min", "lp_q10", "lp_final_mean")}
    return table, {"wrong": wrong, "q10": lp[:, LOGPROB_FEATURES.index("lp_q10")], **shown, **combos}


def print_report(rows: list[dict], table: list[dict]) -> None:
    by = {}
    for r in rows:
        by.setdefault((r["kind"], r["level"]), []).append(r["correct"])
    print(f"\naccuracy {np.mean([r['correct'] for r in rows]):.3f} over {len(rows)} items")
    for (kind, level), ok in sorted(by.items()):
        print(f"  {kind:<8} level {level}: {np.mean(ok):.2f} ({len(ok)})")
    print(f"\n{'AUROC for a wrong answer':<34} {'all items':>22}   {'within kind and level':>22}")
    for t in table:
        print(
            f"  {t['name']:<32} {t['auroc']:6.3f} [{t['lo']:.3f}, {t['hi']:.3f}]   "
            f"{t['within']:6.3f} [{t['wlo']:.3f}, {t['whi']:.3f}]"
        )


def draw(png: Path, fig_data: dict, table: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    auc = {t["name"]: t["auroc"] for t in table}
    wrong = fig_data["wrong"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    bins = np.linspace(fig_data["q10"].min(), 0, 30)
    a.hist(fig_data["q10"][wrong == 0], bins=bins, alpha=0.6, label="right answers")
    a.hist(fig_data["q10"][wrong == 1], bins=bins, alpha=0.6, label="wrong answers")
    a.set(xlabel="lp_q10 (10th percentile of token log-probabilities)", ylabel="answers", title="Tier 1's confidence")
    a.legend()
    for k in ("lp_mean", "lp_min", "lp_q10", "lp_final_mean", "logistic(lp+text, CV)"):
        fpr, tpr, _ = roc_curve(wrong, fig_data[k])
        b.plot(fpr, tpr, label=f"{k} ({auc[k]:.2f})")
    b.plot([0, 1], [0, 1], "k:", lw=0.8)
    b.set(xlabel="right answers escalated (FPR)", ylabel="wrong answers escalated (TPR)", title="ROC: escalating wrong answers")
    b.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"SmolLM2-135M-Instruct on the gold task ({len(wrong)} items, {wrong.mean():.0%} wrong), vLLM CPU, greedy")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default=str(TASK))
    ap.add_argument("--model", default=str(MODEL))
    ap.add_argument("--answers", default=str(ROOT / "build/local_verifier_answers.jsonl"), help="cache of the answers")
    ap.add_argument("--regenerate", action="store_true")
    ap.add_argument("--limit", type=int, default=0, help="only the first N items (0: all)")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--png", default=str(ROOT / "docs/img/local_verifier_smollm2.png"))
    args = ap.parse_args()
    items = [json.loads(line) for line in Path(args.task).read_text(encoding="utf-8").splitlines()]
    items = items[: args.limit] if args.limit else items
    cache = Path(args.answers)
    rows = [json.loads(line) for line in cache.read_text(encoding="utf-8").splitlines()] if cache.exists() else []
    if args.regenerate or [(r["id"], r["question"]) for r in rows] != [(it["id"], it["question"]) for it in items]:
        rows = answer_all(items, Path(args.model), args.max_tokens)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    for r in rows:
        r["correct"] = grade(r, r["answer"])
    table, fig_data = measure(rows, args.n_boot)
    print_report(rows, table)
    if args.png:
        draw(Path(args.png), fig_data, table)


if __name__ == "__main__":
    main()
