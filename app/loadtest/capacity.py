"""The router's own cost: ``/v1/route`` (a routing decision, no generation) against ``/healthz`` (a no-op on
the same ingress), closed loop at one concurrency, in interleaved rounds so drift of a shared machine hits
both alike. Decisions per second per core divide by the cores the ingress and embedder are given.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import httpx
import numpy as np

from app.loadtest import errors


def _consulted_llm(r: httpx.Response) -> bool:
    """A tierroute ``/v1/route`` answer whose decision asked the router LLM (inside the band around the threshold)."""
    if b"llm_consulted" not in r.content:
        return False
    try:
        return r.json().get("llm_consulted") is True
    except (ValueError, AttributeError):
        return False


async def _closed(client: httpx.AsyncClient, request: Callable[[int], httpx.Request], n: int, concurrency: int, timeout: float):
    """(ok count, seconds, server-side router ms of each answer, errors by kind, answers that consulted the router LLM)."""
    next_i, ok, router_ms, errs, llm = 0, 0, [], Counter(), 0

    async def worker():
        nonlocal next_i, ok, llm
        while next_i < n:
            i, next_i = next_i, next_i + 1
            try:
                r = await asyncio.wait_for(client.send(request(i)), timeout)
            except Exception as e:  # noqa: BLE001 — classified
                errs[errors.exception_kind(e)] += 1
                continue
            if r.status_code >= 400:
                errs[errors.http_error(r.status_code, r.content)] += 1
                continue
            ok += 1
            ms = r.headers.get("x-tierroute-router-latency-ms")
            if ms:
                router_ms.append(float(ms))
            llm += _consulted_llm(r)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok, time.perf_counter() - t0, router_ms, errs, llm


async def router_capacity(
    client: httpx.AsyncClient, route_bodies: list[dict], concurrency: int, requests: int, rounds: int,
    cores: float, cores_source: str, timeout: float, progress: Callable[[str], None] | None = None,
) -> dict:  # fmt: skip
    route = lambda i: client.build_request("POST", "/v1/route", json=route_bodies[i % len(route_bodies)])  # noqa: E731
    health = lambda i: client.build_request("GET", "/healthz")  # noqa: E731
    await _closed(client, route, min(requests, 4 * concurrency), concurrency, timeout)  # warm-up
    per_round, router_ms, errs, consulted, decided = [], [], Counter(), 0, 0
    for r in range(rounds):
        res = {}
        for name, req in (("healthz", health), ("route", route)):
            ok, secs, ms, e, llm = await _closed(client, req, requests, concurrency, timeout)
            res[name] = ok / secs
            errs.update({f"{name} {k}": v for k, v in e.items()})
            if name == "route":
                router_ms += ms
                consulted, decided = consulted + llm, decided + ok
            if progress:
                progress(f"router capacity round {r + 1}/{rounds}: {name} {res[name]:.1f}/s")
        per_round.append(res)
    decisions = float(np.median([x["route"] for x in per_round]))
    return {
        "concurrency": concurrency,
        "requests_per_round": requests,
        "rounds": rounds,
        "decisions_per_s": round(decisions, 2),
        "healthz_per_s": round(float(np.median([x["healthz"] for x in per_round])), 2),
        "route_to_healthz_ratio": round(float(np.median([x["route"] / x["healthz"] for x in per_round if x["healthz"] > 0] or [0])), 3),
        "per_round": [{k: round(v, 2) for k, v in x.items()} for x in per_round],
        "router_cores": cores,
        "router_cores_source": cores_source,
        "decisions_per_s_per_core": round(decisions / cores, 2),
        "server_router_ms": {f"p{p}": round(float(np.percentile(router_ms, p)), 2) for p in (50, 95, 99)} if router_ms else None,
        "llm_consulted_share": round(consulted / decided, 4) if decided else None,  # tierroute: decisions that asked the router LLM
        "errors_by_kind": dict(errs),
    }
