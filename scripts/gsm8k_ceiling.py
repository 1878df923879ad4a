"""How far a prompt signal can go on GSM8K-style traffic: the ceiling of oracles nobody has at request time.

The GSM8K kind's expert is prompt length; nothing learned from the prompt beats
it. This script asks whether anything could, on the calibration GSM8K questions
with Mixtral-8x7B vs GPT-4 outcomes: it routes them by signals that a router
never has before generation -- the number of calculation steps in the reference
solution, and whether each of four GPT-3 models (6B/175B, fine-tuned and with
a verifier; openai/grade-school-math) got the question wrong -- alone and plus
prompt length, and prints each one's APGR beside prompt length and random, with
the lift over length and its 90% bootstrap interval. If even these oracles
barely beat length, the question's difficulty for *this* model pair is mostly
noise that no prompt feature predicts.

    .venv/bin/python scripts/gsm8k_ceiling.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from app.calibration.data import load_file  # noqa: E402
from app.calibration.metrics import format_lift, length_scores, lift_interval, random_baseline, summarize  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
GPT3 = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")


def zscore(v: np.ndarray) -> np.ndarray:
    return (v - v.mean()) / (v.std() or 1.0)


def main() -> int:
    ex = load_file(DATA / "routellm" / "gsm8k" / "gsm8k_responses.csv").examples
    sol = {}
    with open(DATA / "grade-school-math" / "example_model_solutions.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            sol[r["question"].strip()] = r
    rows = [sol.get(e.text.strip()) for e in ex]
    if any(r is None for r in rows):
        print(f"{sum(r is None for r in rows)} GSM8K questions have no GPT-3 solutions; run on the shared calibration data", file=sys.stderr)
        return 1
    weak, strong = np.array([e.weak for e in ex]), np.array([e.strong for e in ex])
    length = length_scores([e.text for e in ex])
    log_len = zscore(np.log(length))
    steps = np.array([r["ground_truth"].count("<<") for r in rows], dtype=float)
    fails = {k: np.array([0.0 if r[k]["is_correct"] else 1.0 for r in rows]) for k in GPT3}
    n_fail = sum(fails.values())
    tie = 1e-6 * length  # ties of a discrete oracle broken by length
    signals = {
        "prompt length": length,
        "oracle: reference solution steps": steps + tie,
        **{f"oracle: GPT-3 {k} wrong": v + tie for k, v in fails.items()},
        "oracle: GPT-3 models wrong (0-4)": n_fail + tie,
        "oracle: steps + length (z)": zscore(steps) + log_len,
        "oracle: GPT-3 wrong + length (z)": zscore(n_fail) + log_len,
    }
    print(f"GSM8K, Mixtral-8x7B vs GPT-4: {len(ex)} calibration questions; random APGR {random_baseline(weak, strong)['apgr']:.3f}")
    print(f"{'signal':<38}{'APGR':>7}   lift over length [90% CI]")
    for name, s in signals.items():
        lift = lift_interval(s, length, weak, strong)
        cell = "" if name == "prompt length" else f"   {format_lift(lift)}"
        print(f"{name:<38}{summarize(s, weak, strong)['apgr']:>7.3f}{cell}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
