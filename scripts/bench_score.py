"""Benchmark `tierroute score` against raw SentenceTransformer.encode on the same prompts.

Both run in this process on the same N prompts (calibration prompts from
../shared/data and the shipped exemplars, cycled with a unique suffix):

* baseline: ``SentenceTransformer.encode(prompts, batch_size=32)`` on the whole list;
* tierroute: the full batch path (read JSONL, validate, embed, score, write JSONL).

Prints both throughputs and their ratio (target: tierroute >= 0.80 of baseline),
then one JSON line. Usage: .venv/bin/python scripts/bench_score.py [--n 10000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import calibration_prompts

from app.calibration.batch import score_file  # noqa: E402
from app.routing.router import Router  # noqa: E402


def prompts(n: int) -> list[str]:
    base = calibration_prompts()
    return [f"{base[i % len(base)]} (#{i})" for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()

    texts = prompts(args.n)
    router = Router.load()
    model = router.embedder._model
    model.encode(texts[:64], batch_size=args.batch_size)  # warm-up

    t0 = time.perf_counter()
    model.encode(texts, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True)
    raw_s = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as d:
        inp, out = Path(d) / "in.jsonl", Path(d) / "out.jsonl"
        inp.write_text("".join(json.dumps({"prompt": t, "id": i}) + "\n" for i, t in enumerate(texts)))
        t0 = time.perf_counter()
        res = score_file(router, inp, out, progress=True)
        ours_s = time.perf_counter() - t0
        assert res.written == len(texts)

    raw_tp, ours_tp = len(texts) / raw_s, len(texts) / ours_s
    print(f"prompts: {len(texts)}, mean {sum(map(len, texts)) / len(texts):.0f} chars")
    print(f"raw SentenceTransformer.encode : {raw_s:7.1f} s  {raw_tp:7.1f} prompts/s")
    print(f"tierroute score (end to end)   : {ours_s:7.1f} s  {ours_tp:7.1f} prompts/s")
    print(f"ratio: {ours_tp / raw_tp:.3f} (target >= 0.80)")
    print(json.dumps({"n": len(texts), "raw_prompts_per_s": round(raw_tp, 1), "score_prompts_per_s": round(ours_tp, 1), "throughput_ratio": round(ours_tp / raw_tp, 3)}))


if __name__ == "__main__":
    main()
