"""Overload the local graph past its queue bounds: rejections with Retry-After, memory bounded, recovery.

Starts configs/local.yaml with a small ingress limit (``--limit``, default 16 concurrent requests),
then sends bursts of growing concurrency (loopback only, bounded counts). For each burst: requests
sent, completed, rejected (429/503 with Retry-After, in OpenAI's shape), lost (anything else:
must be 0), and the ingress replica's resident memory against its idle baseline measured in the
same run. After the last burst, one request alone must complete (recovery).

    .venv/bin/python scripts/overload.py [--limit 16] [--bursts 32,128,512]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx
import psutil
from common import local_args

from app.serve.local import local_graph

BODY = {"model": "auto", "messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 16, "ignore_eos": True}


def ingress_pid() -> int:
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "ServeReplica" in cmd and "Ingress" in cmd:
            return p.pid
    raise RuntimeError("no Ingress replica process found")


async def burst(url: str, n: int, proc: psutil.Process) -> dict:
    counts = {"sent": n, "completed": 0, "rejected": 0, "lost": 0}
    peak = [proc.memory_info().rss]
    done = asyncio.Event()

    async def watch():
        while not done.is_set():
            peak.append(proc.memory_info().rss)
            await asyncio.sleep(0.05)

    async def one(client):
        try:
            r = await client.post("/v1/chat/completions", json=BODY)
        except httpx.HTTPError:
            counts["lost"] += 1
            return
        if r.status_code == 200:
            counts["completed"] += 1
        elif r.status_code in (429, 503) and "retry-after" in r.headers and set(r.json().get("error", {})) == {"message", "type", "param", "code"}:
            counts["rejected"] += 1
        else:
            counts["lost"] += 1

    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        w = asyncio.create_task(watch())
        t0 = time.monotonic()
        await asyncio.gather(*(one(client) for _ in range(n)))
        counts["seconds"] = round(time.monotonic() - t0, 1)
        done.set()
        await w
    counts["peak_rss_mib"] = round(max(peak) / 2**20, 1)
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=16, help="ingress.max_concurrent_requests")
    ap.add_argument("--bursts", default="32,128,512", help="concurrencies, each sent at once")
    args = ap.parse_args()
    cfg = local_args()
    cfg["ingress"]["max_concurrent_requests"] = args.limit
    cfg["ingress"]["replica"]["max_ongoing_requests"] = max(args.limit + 1, 1024)  # the ingress's own limit answers first
    with local_graph(cfg, name="overload") as url:
        proc = psutil.Process(ingress_pid())
        httpx.post(f"{url}/v1/chat/completions", json=BODY, timeout=120).raise_for_status()  # warm
        base = proc.memory_info().rss / 2**20
        print(f"ingress limit {args.limit} concurrent; ingress replica RSS at idle {base:.1f} MiB")
        rows = []
        for n in (int(x) for x in args.bursts.split(",")):
            r = asyncio.run(burst(url, n, proc))
            r["rss_vs_idle"] = round(r["peak_rss_mib"] / base, 3)
            rows.append(r)
            print(f"burst {n:>5}: completed {r['completed']:>5}, rejected {r['rejected']:>5} (429/503 + Retry-After), lost {r['lost']}, "
                  f"{r['seconds']} s, ingress peak RSS {r['peak_rss_mib']} MiB ({r['rss_vs_idle']:.3f}x idle)")  # fmt: skip
        time.sleep(2)
        after = httpx.post(f"{url}/v1/chat/completions", json=BODY, timeout=120)
        print(f"after the load: one request -> {after.status_code}")
        print(json.dumps({"limit": args.limit, "idle_rss_mib": round(base, 1), "bursts": rows, "recovered": after.status_code == 200}))
        return 0 if after.status_code == 200 and all(r["lost"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
