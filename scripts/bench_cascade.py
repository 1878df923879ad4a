"""What the cascade adds to a request on the local graph: the verifier's latency and each mode's time to first token.

One local graph (configs/local.yaml: real MiniLM embedder, real vLLM CPU engines on the tiny models) in
``route`` mode, and four more ingresses over the same tier engines: cascade with buffered and early
streaming, each with a verifier threshold of 1 (tier 1's answer always stands: the verifier's cost alone)
and of 0 (always escalated: the cost of an escalation). Requests go one at a time, in interleaved rounds
(every variant once per request index) so that drift of a shared machine hits all alike.

Printed, as p50 over all requests (and one JSON line):
  * unary: the plain tier-1 call (the request names tier 1's model, route mode) against the same request
    cascaded and accepted; the added ms and the ratio (what the cascade adds when tier 1's answer stands:
    log-probabilities, the verifier, the response re-shaped), and the plain call asked with log-probabilities
    (the engine's part of that);
  * the verifier alone, in process (the shipped artifact's Verifier.verdict on tier 1's answers);
  * streams: time to first content token and to the end, for route (tier 1), cascade buffer / early
    accepted, cascade buffer / early escalated, and tier 2 alone (bypass).

Usage: .venv/bin/python scripts/bench_cascade.py [--rounds 3] [--requests 10] [--max-tokens 64] [--early-tokens 16]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from common import cpu_name, local_args  # noqa: E402

APP = "bench-cascade"
PROMPTS = [
    "What is the capital of France?",
    "Translate 'good morning' to Spanish.",
    "Convert 5 miles to kilometres.",
    "What does HTTP 404 mean?",
    "Write a haiku about autumn.",
]


def add_ingress(args: dict, app: str, name: str, prefix: str, router_llm: bool = False) -> None:
    """Another application: an ingress of ``args`` over application ``app``'s tier engines (and its router LLM's)."""
    from ray import serve

    from app.serve.graph import app_config, ingress_app

    deps = serve.status().applications[app].deployments
    cfg, _ = app_config(args)
    tiers = [serve.get_deployment_handle(next(d for d in deps if d.startswith(f"Tier{r.index}:")), app) for r in cfg.ladder]
    llm = serve.get_deployment_handle(next(d for d in deps if d.startswith("RouterLLM:")), app) if router_llm else None
    serve.run(ingress_app(cfg, tiers, llm), name=name, route_prefix=prefix)


def cascade_args(stream: str, threshold: float, early_tokens: int) -> dict:
    args = local_args()
    args["routing"] = {"mode": "cascade", "cascade": {"stream": stream, "threshold": threshold, "early_tokens": early_tokens}}
    return args


def body(model: str, prompt: str, max_tokens: int, stream: bool) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "ignore_eos": True, "stream": stream}


def unary(client: httpx.Client, path: str, b: dict) -> tuple[float, dict]:
    t0 = time.perf_counter()
    r = client.post(path, json=b)
    r.raise_for_status()
    return (time.perf_counter() - t0) * 1000, r.json()


def stream(client: httpx.Client, path: str, b: dict) -> tuple[float, float, str]:
    """(ms to the first content token, ms to the end, the path the response names)."""
    t0, first = time.perf_counter(), None
    with client.stream("POST", path, json=b) as r:
        r.raise_for_status()
        taken = r.headers.get("x-tierroute-path", "")
        for line in r.iter_lines():
            if first is None and line.startswith("data: {") and any(c.get("delta", {}).get("content") for c in json.loads(line[6:]).get("choices") or []):
                first = time.perf_counter()
    end = time.perf_counter()
    return ((first or end) - t0) * 1000, (end - t0) * 1000, taken


def verifier_alone(answers: list[tuple[str, str]]) -> float:
    """p50 µs of the shipped verifier's verdict on (request, answer) pairs, in process (the texts its experts
    embed are embedded beforehand, untimed: the graph's figures include the embedder)."""
    from app.routing.embed import Embedder, EmbedderConfig
    from app.verification.artifact import load_verifier
    from app.verification.verifier import Answer, Verifier

    v = Verifier(load_verifier(None))
    texts = sorted({t for q, a in answers for t in v.texts(Answer(q, a))})
    embs = {}
    if texts:
        info = v.artifact.embedder
        embs = dict(zip(texts, Embedder(EmbedderConfig(model=info.model_id, prefix=info.prefix)).encode(texts)))
    times = []
    for _ in range(20):
        for q, a in answers:
            t0 = time.perf_counter()
            v.verdict(Answer(q, a), embs)
            times.append((time.perf_counter() - t0) * 1e6)
    return float(np.median(times))


def run(url: str, opts) -> dict:
    tier1, tier2 = local_args()["tier1"]["model_id"], local_args()["tier2"]["model_id"]
    unary_variants = {
        "plain tier 1": ("/v1/chat/completions", tier1),
        "plain tier 1 + logprobs": ("/v1/chat/completions", tier1),  # the engine's part of the cascade's cost
        "cascade accepted": ("/accept-buffer/v1/chat/completions", "auto"),
    }
    stream_variants = {
        "route (tier 1)": ("/v1/chat/completions", "auto"),
        "buffer accepted": ("/accept-buffer/v1/chat/completions", "auto"),
        "early accepted": ("/accept-early/v1/chat/completions", "auto"),
        "buffer escalated": ("/escalate-buffer/v1/chat/completions", "auto"),
        "early escalated": ("/escalate-early/v1/chat/completions", "auto"),
        "tier 2 alone": ("/v1/chat/completions", tier2),
    }
    lat = {k: [] for k in unary_variants}
    ttft = {k: [] for k in stream_variants}
    total = {k: [] for k in stream_variants}
    answers = []
    with httpx.Client(base_url=url, timeout=300) as client:
        prompts = [p for p in PROMPTS if client.post("/v1/route", json={"prompt": p}).json()["tier"] == 1]  # route mode: tier 1
        for _, (path, model) in {**unary_variants, **stream_variants}.items():  # warm every path once
            client.post(path, json=body(model, PROMPTS[0], 4, False)).raise_for_status()
        for _ in range(opts.rounds):
            for i in range(opts.requests):
                prompt = prompts[i % len(prompts)]
                for k, (path, model) in unary_variants.items():
                    ms, b = unary(client, path, {**body(model, prompt, opts.max_tokens, False), "logprobs": k.endswith("logprobs")})
                    lat[k].append(ms)
                    if k == "cascade accepted":
                        assert b["tierroute"]["path"] == "tier1", b["tierroute"]
                        answers.append((prompt, b["choices"][0]["message"]["content"] or ""))
                for k, (path, model) in stream_variants.items():
                    first, end, _ = stream(client, path, body(model, prompt, opts.max_tokens, True))
                    ttft[k].append(first)
                    total[k].append(end)
    p50 = lambda xs: round(float(np.median(xs)), 1)  # noqa: E731
    plain, casc = p50(lat["plain tier 1"]), p50(lat["cascade accepted"])
    return {
        "unary_p50_ms": {k: p50(v) for k, v in lat.items()},
        "cascade_added_ms": round(casc - plain, 1),
        "cascade_ratio": round(casc / plain, 3),
        "logprobs_added_ms": round(p50(lat["plain tier 1 + logprobs"]) - plain, 1),
        "verifier_alone_us": round(verifier_alone(answers[: 2 * len(prompts)]), 1),
        "ttft_p50_ms": {k: p50(v) for k, v in ttft.items()},
        "end_p50_ms": {k: p50(v) for k, v in total.items()},
        "requests_per_variant": opts.rounds * opts.requests,
        "prompts": len(prompts),
        "max_tokens": opts.max_tokens,
        "early_tokens": opts.early_tokens,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=10, help="per round and variant")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--early-tokens", type=int, default=16)
    opts = ap.parse_args()
    from app.serve.local import local_graph

    with local_graph(local_args(), name=APP) as url:
        for stream_mode in ("buffer", "early"):
            for name, threshold in (("accept", 1.0), ("escalate", 0.0)):
                add_ingress(cascade_args(stream_mode, threshold, opts.early_tokens), APP, f"{name}-{stream_mode}", f"/{name}-{stream_mode}")
        out = run(url, opts)
    cpu = cpu_name()
    out["cpu"], out["load_avg_1m"] = cpu, round(os.getloadavg()[0], 2)
    print(f"CPU: {cpu}; load average {out['load_avg_1m']}; {out['requests_per_variant']} requests per variant, max_tokens {opts.max_tokens}")
    print(f"unary p50: plain tier 1 {out['unary_p50_ms']['plain tier 1']} ms, cascaded and accepted {out['unary_p50_ms']['cascade accepted']} ms:"
          f" +{out['cascade_added_ms']} ms, ratio {out['cascade_ratio']}; of which the engine's log-probabilities"
          f" +{out['logprobs_added_ms']} ms (plain tier 1 asked with logprobs); the verifier alone {out['verifier_alone_us']} µs")  # fmt: skip
    print(f"{'stream':<20} {'TTFT p50 ms':>12} {'end p50 ms':>12}")
    for k in out["ttft_p50_ms"]:
        print(f"{k:<20} {out['ttft_p50_ms'][k]:>12} {out['end_p50_ms'][k]:>12}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
