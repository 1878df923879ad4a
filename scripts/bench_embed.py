"""The embedder's backends compared: CPU cost per short prompt, and what each changes in routing.

For each backend (torch float32 is the reference; onnx float32; openvino float32
and bfloat16):

* cost: CPU milliseconds per prompt (process time, all threads) embedding short
  chat prompts (<= 32 tokens) at batch sizes 1, 8 and 32, with ``--threads`` threads;
* agreement with torch float32 on the calibration prompts (../shared/data, when
  present, and the shipped exemplars): cosine of the embeddings, the shipped
  artifact's embedding score, tier decisions that differ (in all, and outside the
  band where the router LLM is consulted anyway) and router-LLM consultations that differ.

Prints a table, then one JSON line. Usage:
  .venv/bin/python scripts/bench_embed.py [--threads 1] [--n 0 (all prompts)]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from bench_serve import PROMPTS  # the serving benchmark's short prompts
from common import calibration_prompts

from app.routing.artifact import load_artifact  # noqa: E402
from app.routing.embed import Embedder, EmbedderConfig  # noqa: E402
from app.routing.router import Router  # noqa: E402

BACKENDS = [("torch", "float32"), ("onnx", "float32"), ("openvino", "float32"), ("openvino", "bfloat16")]


def cpu_ms_per_prompt(emb: Embedder, batch: int, seconds: float = 2.0) -> float:
    texts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    emb.encode(texts)  # warm-up
    n, c0, t0 = 0, time.process_time(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        emb.encode(texts)
        n += batch
    return (time.process_time() - c0) / n * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="threads per backend (1: CPU cost without parallel overhead)")
    ap.add_argument("--n", type=int, default=0, help="calibration prompts to compare on (0: all)")
    args = ap.parse_args()

    router = Router(load_artifact(None))
    texts = calibration_prompts(args.n)
    print(f"{len(texts)} calibration prompts; short prompts: {len(PROMPTS)}; {args.threads} thread(s); {os.cpu_count()} cores")
    ref = None
    rows = []
    for backend, precision in BACKENDS:
        emb = Embedder(EmbedderConfig(backend=backend, precision=precision, num_threads=args.threads, device="cpu"))
        cost = {b: cpu_ms_per_prompt(emb, b) for b in (1, 8, 32)}
        vecs = emb.encode(texts, progress=True)
        sig = router.score_embeddings(vecs, texts)
        if ref is None:
            ref = (vecs, sig)
        rvecs, rsig = ref
        dscore = np.abs(sig.score - rsig.score)
        tier = (sig.score >= router.threshold) != (rsig.score >= router.threshold)
        in_band = np.array([router.wants_llm(q) for q in sig.quantile])
        ref_band = np.array([router.wants_llm(q) for q in rsig.quantile])
        band = in_band != ref_band
        cos = (vecs * rvecs).sum(1)
        rows.append({
            "backend": backend, "precision": precision, "computes_in": emb.precision,
            **{f"cpu_ms_bs{b}": round(c, 3) for b, c in cost.items()},
            "cos_min": round(float(cos.min()), 6), "score_diff_p99": round(float(np.percentile(dscore, 99)), 5),
            "score_diff_max": round(float(dscore.max()), 5), "tier_changed": int(tier.sum()),
            "tier_changed_outside_band": int((tier & ~ref_band).sum()), "llm_band_changed": int(band.sum()),
        })  # fmt: skip

    print(f"\n{'backend':18s} {'computes in':11s} {'CPU ms/prompt bs1':>17s} {'bs8':>6s} {'bs32':>6s}   "
          f"{'cos min':>8s} {'|Δscore| p99':>12s} {'max':>7s} {'tier changed':>12s} {'(outside band)':>14s} {'LLM band changed':>16s}")  # fmt: skip
    for r in rows:
        print(f"{r['backend'] + ' ' + r['precision']:18s} {r['computes_in']:11s} {r['cpu_ms_bs1']:17.2f} {r['cpu_ms_bs8']:6.2f} "
              f"{r['cpu_ms_bs32']:6.2f}   {r['cos_min']:8.5f} {r['score_diff_p99']:12.5f} {r['score_diff_max']:7.4f} "
              f"{r['tier_changed']:>7d}/{len(texts)} {r['tier_changed_outside_band']:>14d} {r['llm_band_changed']:>11d}/{len(texts)}")  # fmt: skip
    print(json.dumps({"n": len(texts), "threads": args.threads, "backends": rows}))


if __name__ == "__main__":
    main()
