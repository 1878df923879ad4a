"""What routing adds to a request, and what the local default costs to start.

Part 1 — overhead. In one Ray cluster and one run:
  * baseline: a single no-op Serve deployment behind the same HTTP proxy that reads
    the request body and answers /v1/chat/completions with a canned completion;
  * routed:   the real ingress + real MiniLM embedder + the shipped artifact, with
    tiers that answer instantly (so only routing is measured; router LLM off).
Short chat prompts (<= 32 tokens) at concurrency 1 and 32, in interleaved rounds
(noop, routed, noop, routed, ...) so that drift of a shared machine hits both alike;
each figure is the median over rounds of that round's difference or ratio. Prints
p50/p99 latency of both per round, the added latency, the throughput ratio, then
one JSON line.
Targets on a 2-core machine: added p50 <= 12 ms at concurrency 1, routed
throughput >= 50% of the baseline at concurrency 32.

Part 1b — where the time goes on this CPU (printed after part 1, measured in the same run, Serve idle):
the CPU model and the flags the embedder's speed depends on (amx_tile/amx_bf16: Intel AMX; avx512_bf16),
the embedder's forward time per batch size in the configured precision and in float32 (to compare the
two on the CPU at hand), the artifact's scoring time, and the rest of the added time per
routed request at c=32 (ingress: batch queue, decision, Serve calls, JSON), so a user on another CPU sees
which part limits the routed/no-op ratio there.

Part 2 (--startup) — the local default (configs/local.yaml: embedder, router LLM and
two vLLM tiers on CPU): seconds from `serve.run` to ready, and peak memory of the
machine above its level before the start (sampled every 0.2 s).

Usage: .venv/bin/python scripts/bench_serve.py [--startup] [--rounds 3] [--requests-c1 200] [--requests-c32 1000]
       [--colocate yes|no] [--grpc yes|no] [--backend torch|onnx|openvino] [--precision float32|bfloat16] [--num-threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import ray  # noqa: E402
from common import free_port, local_args  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from ray import serve  # noqa: E402

PROMPTS = [
    "What is the capital of France?",
    "Reset my password please",
    "Translate 'good morning' to Spanish.",
    "Is my order #1234 shipped yet?",
    "Convert 5 miles to kilometres.",
    "Prove that the square root of 2 is irrational.",
    "Write a haiku about autumn.",
    "What does HTTP 404 mean?",
]
CANNED = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 0,
    "model": "noop",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9},
}

noop_api = FastAPI()


@serve.deployment(max_ongoing_requests=256, ray_actor_options={"num_cpus": 0.1})
@serve.ingress(noop_api)
class NoOp:
    """Reads and parses the request, as any OpenAI server must, and answers at once."""

    @noop_api.post("/v1/chat/completions")
    async def chat(self, request: Request) -> dict:
        body = await request.json()
        return {**CANNED, "model": body["model"]}


@serve.deployment(max_ongoing_requests=256, ray_actor_options={"num_cpus": 0.1}, logging_config={"enable_access_log": False})
class InstantTier:
    """Stands in for a vLLM tier in this benchmark only: answers at once."""

    def __init__(self):
        from ray.serve.llm.openai_api_models import ChatCompletionResponse  # imports vLLM: seconds, so not per request

        self.response_cls = ChatCompletionResponse

    async def chat_once(self, request, raw_request_info=None):  # as app.serve.llm.TierServer
        return self.response_cls.model_validate({**CANNED, "model": request.model})

    async def check_health(self) -> None:
        return None


async def load(url: str, n: int, concurrency: int) -> tuple[np.ndarray, float]:
    """(latencies in ms, requests per second) for n requests at a fixed concurrency."""
    lat: list[float] = []
    queue = list(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def worker():
            while queue:
                i = queue.pop()
                body = {"model": "auto", "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}], "max_tokens": 1}
                t0 = time.perf_counter()
                r = await client.post(url, json=body)
                lat.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()

        t0 = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        elapsed = time.perf_counter() - t0
    return np.array(lat), n / elapsed


def overhead(args) -> dict:
    from app.serve.graph import app_config, ingress_app

    local = local_args()
    local["router_llm"] = None
    if args.colocate is not None:
        local["embedder"]["colocate"] = args.colocate == "yes"
    if args.grpc is not None:
        local["ingress"]["grpc_calls"] = args.grpc == "yes"
    for field in ("backend", "precision", "num_threads"):
        if getattr(args, field) is not None:
            local["embedder"][field] = getattr(args, field)
    if args.backend not in (None, "openvino"):
        local["embedder"]["precision"] = "float32"
    cfg, _ = app_config(local)
    e = cfg.embedder
    print(f"embedder: {e.backend} {e.precision}, {e.num_threads} threads, co-located in the ingress: {e.colocate}; "
          f"gRPC calls between deployments: {cfg.ingress.grpc_calls}")
    routed = ingress_app(cfg, [InstantTier.options(name="Tier1").bind(), InstantTier.options(name="Tier2").bind()])
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(NoOp.bind(), name="noop", route_prefix="/noop")
    serve.run(routed, name="routed", route_prefix="/routed")
    base = f"http://127.0.0.1:{port}"
    for path in ("/noop", "/routed"):  # warm-up: model load, connections
        asyncio.run(load(f"{base}{path}/v1/chat/completions", 64, 8))
    rounds: list[dict] = []
    for r in range(args.rounds):
        res = {}
        for c, n in ((1, args.requests_c1), (32, args.requests_c32)):
            for name in ("noop", "routed"):
                lat, rps = asyncio.run(load(f"{base}/{name}/v1/chat/completions", n, c))
                res[(name, c)] = (float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), rps)
                p50, p99, _ = res[(name, c)]
                print(f"round {r + 1} c={c:<3} {name:<7} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  {rps:7.1f} req/s", flush=True)
        rounds.append({
            "added_p50_ms_c1": res[("routed", 1)][0] - res[("noop", 1)][0],
            "added_p99_ms_c1": res[("routed", 1)][1] - res[("noop", 1)][1],
            "added_p50_ms_c32": res[("routed", 32)][0] - res[("noop", 32)][0],
            "throughput_ratio_c1": res[("routed", 1)][2] / res[("noop", 1)][2],
            "throughput_ratio_c32": res[("routed", 32)][2] / res[("noop", 32)][2],
            "rps_noop_c32": res[("noop", 32)][2],
            "rps_routed_c32": res[("routed", 32)][2],
        })  # fmt: skip
    serve.delete("routed")
    serve.delete("noop")
    out = {k: round(float(np.median([rd[k] for rd in rounds])), 3) for k in rounds[0]}
    out["rounds"] = args.rounds
    print("per round: " + "; ".join(f"{k} " + " ".join(f"{rd[k]:.2f}" for rd in rounds) for k in ("added_p50_ms_c1", "throughput_ratio_c32")))
    print(f"added latency at c=1: p50 {out['added_p50_ms_c1']} ms (target <= 12), p99 {out['added_p99_ms_c1']} ms")
    print(f"routed/no-op throughput at c=32: {out['throughput_ratio_c32']} (target >= 0.5)")
    out["breakdown"] = breakdown(cfg, out)
    return out


def _median_ms(fn, reps: int) -> float:
    fn()  # warm: kernels for this shape
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def breakdown(cfg, overhead_out: dict, batches=(1, 8, 32), reps: int = 7) -> dict:
    """Where the added time of a routed request goes on this CPU: embedder forward per batch size (configured
    precision and float32), scoring, and the rest (ingress), against the c=1 and c=32 figures of this run."""
    from threadpoolctl import threadpool_limits

    from app.loadtest.hostcpu import cpu_info
    from app.routing.artifact import load_artifact
    from app.routing.embed import Embedder
    from app.routing.router import Router

    cpu = cpu_info()
    flags = ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in cpu["flags"].items())
    print(f"\nwhere the time goes on this CPU: {cpu['model']} ({cpu['cores']} cores; {flags})")
    e = cfg.embedder.embedding_model()
    precisions = [e.precision] + (["float32"] if e.precision != "float32" and e.backend == "openvino" else [])
    texts = [PROMPTS[i % len(PROMPTS)] for i in range(max(batches))]
    out: dict = {"cpu": cpu, "embed_ms": {}, "score_ms": {}}
    models = []
    for precision in precisions:
        model = Embedder(e.model_copy(update={"precision": precision}))
        label = f"{e.backend} {model.precision}" + (" (asked bfloat16: this CPU has no bf16 units)" if model.precision != precision else "")
        row = {b: _median_ms(lambda b=b: model.encode(texts[:b]), reps) for b in batches}
        out["embed_ms"][label] = row
        models.append(model)
        print(f"  embedder forward, {label}, {e.num_threads} threads: " + "; ".join(
            f"batch {b}: {ms:.1f} ms ({ms / b:.2f} ms/prompt)" for b, ms in row.items()))  # fmt: skip
    router = Router(load_artifact(cfg.artifact), models[0])
    emb = models[0].encode(texts)
    with threadpool_limits(1):  # as in a Serve replica, where Ray sets OMP_NUM_THREADS=1 (numpy's BLAS: one thread)
        out["score_ms"] = {b: _median_ms(lambda b=b: router.score_embeddings(emb[:b], texts[:b]), reps) for b in batches}
    print("  scoring (artifact on embeddings): " + "; ".join(
        f"batch {b}: {ms:.2f} ms ({ms / b:.3f} ms/prompt)" for b, ms in out["score_ms"].items()))  # fmt: skip
    del models, router
    first = next(iter(out["embed_ms"].values()))
    big = max(batches)
    embed1, score1 = first[1], out["score_ms"][1]
    added1 = overhead_out["added_p50_ms_c1"]
    print(f"  c=1: routing adds {added1:.1f} ms p50 = embed (batch 1) {embed1:.1f} + scoring {score1:.2f} "
          f"+ rest (ingress: decision, Serve calls, JSON) {added1 - embed1 - score1:.1f} ms")  # fmt: skip
    noop_ms = 1000 / overhead_out["rps_noop_c32"]  # medians over rounds
    routed_ms = 1000 / overhead_out["rps_routed_c32"]
    embed32, score32 = first[big] / big, out["score_ms"][big] / big
    rest = routed_ms - noop_ms - embed32 - score32
    print(f"  c=32 (2 cores, shared with this client and Ray): a no-op request takes {noop_ms:.2f} ms of the machine, a routed one "
          f"{routed_ms:.2f} ms; the {routed_ms - noop_ms:.2f} ms routing adds = embed {embed32:.2f} (at best: batch {big}) "
          f"+ scoring {score32:.3f} + rest {rest:.2f} ms (ingress: batch queue, decision, Serve calls, JSON)")  # fmt: skip
    larger = "the embedder" if embed32 + score32 > rest else "the rest of the ingress"
    print(f"  embedding is {100 * embed32 / routed_ms:.0f}% of a routed request's time at batch {big} "
          f"({100 * first[8] / 8 / routed_ms:.0f}% at batch 8); {larger} is the larger part of what routing adds here")
    out["c32_ratio_if"] = {}
    for label, row in list(out["embed_ms"].items())[1:]:  # the same path with a slower embedder, e.g. float32 on a CPU without bf16 units
        slower = routed_ms - embed32 + row[big] / big
        out["c32_ratio_if"][label] = round(noop_ms / slower, 3)
        print(f"  with the embedder at {label}'s speed (a CPU without bf16 units computes so), the c=32 ratio would be "
              f"{noop_ms / slower:.2f} at batch {big}, {noop_ms / (slower - row[big] / big + row[8] / 8):.2f} at batch 8 "
              f"(with this one, from the median rates: {noop_ms / routed_ms:.2f})")
    out["c32_ms_per_request"] = {"noop": round(noop_ms, 3), "routed": round(routed_ms, 3), "embed": round(embed32, 3),
                                 "score": round(score32, 4), "rest": round(rest, 3)}  # fmt: skip
    out["embed_ms"] = {k: {str(b): round(v, 2) for b, v in row.items()} for k, row in out["embed_ms"].items()}
    out["score_ms"] = {str(b): round(v, 3) for b, v in out["score_ms"].items()}
    return out


def startup() -> dict:
    import psutil

    from app.serve.graph import build_app

    args = local_args()
    base = psutil.virtual_memory().used
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], psutil.virtual_memory().used)
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    serve.run(build_app(args), name="local-default", route_prefix="/local")
    ready_s = time.perf_counter() - t0
    time.sleep(2)
    stop.set()
    serve.delete("local-default")
    out = {"startup_s": round(ready_s, 1), "peak_memory_gib": round((peak[0] - base) / 2**30, 2)}
    print(f"local default: ready in {out['startup_s']} s, peak memory {out['peak_memory_gib']} GiB above idle")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved noop/routed rounds; figures are medians over rounds")
    ap.add_argument("--requests-c1", type=int, default=200, help="requests per round at concurrency 1")
    ap.add_argument("--requests-c32", type=int, default=1000, help="requests per round at concurrency 32")
    ap.add_argument("--colocate", choices=["yes", "no"], help="override configs/local.yaml's embedder.colocate")
    ap.add_argument("--grpc", choices=["yes", "no"], help="override configs/local.yaml's ingress.grpc_calls")
    ap.add_argument("--backend", choices=["torch", "onnx", "openvino"], help="override the embedder's backend")
    ap.add_argument("--precision", choices=["float32", "bfloat16"], help="override the embedder's precision")
    ap.add_argument("--num-threads", type=int, help="override the embedder's num_threads")
    ap.add_argument("--startup", action="store_true", help="also measure the local default's startup time and peak memory")
    args = ap.parse_args()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out = overhead(args)
        if args.startup:
            out.update(startup())
    finally:
        serve.shutdown()
        ray.shutdown()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
