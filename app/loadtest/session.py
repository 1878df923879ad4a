"""A whole load test: the mix, the arms (one; or all-tier-2 and routed with ``--compare``, plus the cascade with
``--cascade``), each load level
in turn with the arms interleaved (their order alternating from level to level, so drift hits both alike),
then optionally the router's capacity. Returns the JSON-ready results.

Modes per arm: the endpoint's ``routing.mode`` is its own (a client cannot change it), so the arms choose per
request. The routed arm of ``--compare`` sends ``x-tierroute-cascade: off`` (routed before generation even when
the endpoint cascades, if it allows the opt-out); the cascade arm sends no such header, so it runs the endpoint's
cascade mode (cascade or cascade_routing). The paths the answers report show what each arm got.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from urllib.parse import urlsplit

import httpx
from tqdm import tqdm

from app.loadtest import errors
from app.loadtest.capacity import router_capacity
from app.loadtest.client import send
from app.loadtest.config import LoadTestConfig
from app.loadtest.hostcpu import cpu_info
from app.loadtest.mix import chat_body, load_mix, route_body
from app.loadtest.runner import closed_loop, open_loop
from app.loadtest.stats import summarize
from app.feedback.endpoint import auth_headers

ALL_TIER2, ROUTED, CASCADE = "all-tier2", "routed", "cascade"
OPT_OUT = {"x-tierroute-cascade": "off"}  # app.serve.routing_config.OPT_OUT_HEADER: this request is routed, not cascaded
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


async def list_models(client: httpx.AsyncClient, url: str) -> list[dict]:
    """``/v1/models``' cards; ValueError naming --url when nothing answers there."""
    try:
        r = await client.get("/v1/models")
    except httpx.TransportError as e:
        raise ValueError(f"--url {url}: cannot reach the endpoint ({errors.exception_kind(e)}: {e})") from None
    if r.status_code >= 400:
        return []
    try:
        return list(r.json().get("data") or [])
    except (ValueError, AttributeError):
        return []


def tier2_model_of(cards: list[dict]) -> str | None:
    """The model id a tierroute endpoint lists as its top tier (the highest ``metadata.tier``: tier 2 of a pair,
    the strongest tier of a ladder) -- the all-tier2 arm's model."""
    tiers = [(meta["tier"], c.get("id")) for c in cards if isinstance(meta := c.get("metadata") or {}, dict) and isinstance(meta.get("tier"), int)]
    return max(tiers)[1] if tiers else None


def arms_of(cfg: LoadTestConfig, cards: list[dict]) -> dict[str, str]:
    """Arm name -> the model it asks for."""
    if not cfg.compare:
        return {ROUTED if cfg.model == "auto" else cfg.model: cfg.model}
    tier2 = cfg.tier2_model or tier2_model_of(cards)
    if tier2 is None:
        listed = ", ".join(str(c.get("id")) for c in cards) or "none"
        raise ValueError(f"--compare: the endpoint's /v1/models names no tier-2 model (listed: {listed}); give --tier2-model")
    arms = {ALL_TIER2: tier2, ROUTED: cfg.model}
    if cfg.cascade:
        arms[CASCADE] = cfg.model
    return arms


def arm_headers(cfg: LoadTestConfig, arm: str) -> dict | None:
    """The routed arm of --compare opts out of the cascade; the others send no routing header."""
    return OPT_OUT if cfg.compare and arm == ROUTED else None


def router_cores(cfg: LoadTestConfig, host: dict) -> tuple[float, str]:
    if cfg.router_cores is not None:
        return cfg.router_cores, "--router-cores"
    if urlsplit(cfg.url).hostname in LOOPBACK:
        return float(host["cores"]), "the host's cores (the ingress runs on this host and shares them with this client)"
    return float(host["cores"]), "this client's cores (the endpoint is remote: give --router-cores for its ingress)"


async def _warm(client: httpx.AsyncClient, cfg: LoadTestConfig, mix, model: str, headers: dict | None) -> None:
    for i in range(cfg.warmup):
        now = time.perf_counter()
        o = await send(client, chat_body(mix[i % len(mix)], model, cfg.max_tokens, cfg.stream), i, now, now, cfg.timeout, headers)
        if o.error == errors.CONNECT:
            raise ValueError(f"--url {cfg.url}: cannot connect")


async def run_session(cfg: LoadTestConfig, log=print, transport: httpx.AsyncBaseTransport | None = None) -> dict:
    """``transport``: httpx's default (the network) unless given."""
    mix = load_mix(cfg.input, cfg.seed, cfg.limit, cfg.skip_invalid)
    host = cpu_info()
    headers = auth_headers(cfg.api_key)
    most = max(int(max(cfg.levels, default=1)) if cfg.loop == "closed" else cfg.max_outstanding, cfg.route_concurrency if cfg.route_capacity else 1)
    limits = httpx.Limits(max_connections=most, max_keepalive_connections=most)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    async with httpx.AsyncClient(base_url=cfg.url, headers=headers, timeout=cfg.timeout, limits=limits, transport=transport) as client:
        cards = await list_models(client, cfg.url)
        arms = arms_of(cfg, cards) if cfg.levels else {}
        what = ("arms: " + ", ".join(f"{a} (model {m})" for a, m in arms.items())) if arms else "router capacity only"
        log(f"{len(mix)} requests in the mix ({cfg.input}, seed {cfg.seed}); {what}")
        for arm, model in arms.items():
            await _warm(client, cfg, mix, model, arm_headers(cfg, arm))
        levels = []
        for k, load in enumerate(cfg.levels):
            order = list(arms) if k % 2 == 0 else list(reversed(arms))
            summaries = {}
            for arm in order:
                summaries[arm] = summarize(await _level(client, cfg, mix, arm, arms[arm], load, k))
            levels.append({"load": load, "arms": {a: summaries[a] for a in arms}})
        capacity = None
        if cfg.route_capacity:
            cores, source = router_cores(cfg, host)
            capacity = await router_capacity(
                client, [route_body(m) for m in mix], cfg.route_concurrency, cfg.route_requests, cfg.route_rounds,
                cores, source, cfg.timeout, progress=log,
            )  # fmt: skip
            capacity["host_cpu"] = host
    return {
        "tool": "tierroute loadtest",
        "started_utc": started,
        "url": cfg.url,
        "input": str(cfg.input),
        "requests_in_mix": len(mix),
        "seed": cfg.seed,
        "loop": cfg.loop if cfg.levels else None,
        "load_unit": "requests/s (Poisson arrivals)" if cfg.loop == "open" else "concurrent requests",
        "stream": cfg.stream,
        "max_tokens": cfg.max_tokens,
        "requests_per_level": cfg.requests,
        "duration_s_per_level": cfg.duration,
        "arms": arms,
        "arm_headers": {a: arm_headers(cfg, a) for a in arms},
        "host_cpu": host,
        "levels": levels,
        "comparison": [comparison(lv) for lv in levels] if cfg.compare else None,
        "router_capacity": capacity,
        "config": cfg.model_dump(mode="json", exclude={"api_key"}),  # the settings, to rerun it (never the key)
    }


async def _level(client, cfg: LoadTestConfig, mix, arm: str, model: str, load: float, k: int):
    bodies = lambda i: chat_body(mix[i % len(mix)], model, cfg.max_tokens, cfg.stream)  # noqa: E731
    unit = "/s" if cfg.loop == "open" else " in flight"
    headers = arm_headers(cfg, arm)
    with tqdm(total=cfg.requests, desc=f"{arm} @ {load:g}{unit}", unit="req", disable=not cfg.progress, leave=False) as bar:
        if cfg.loop == "open":
            return await open_loop(
                client, bodies, load, cfg.requests, cfg.duration, cfg.timeout, cfg.max_outstanding,
                seed=cfg.seed * 1000 + k, arm=arm, on_done=lambda: bar.update(1), headers=headers,
            )  # fmt: skip
        return await closed_loop(
            client, bodies, int(load), cfg.requests, cfg.duration, cfg.timeout, arm=arm, on_done=lambda: bar.update(1), headers=headers
        )


def _ratio(a, b):
    return round(a / b, 3) if a is not None and b not in (None, 0) else None


def _ratios(arm: dict, t2: dict) -> dict:
    out = {"throughput": _ratio(arm["throughput_rps"], t2["throughput_rps"]),
           "output_tokens_per_s": _ratio(arm["output_tokens_per_s"], t2["output_tokens_per_s"])}  # fmt: skip
    for p in ("p50", "p95", "p99"):
        out[f"e2e_{p}"] = _ratio(arm["e2e_ms"][p], t2["e2e_ms"][p])
        out[f"ttft_{p}"] = _ratio(arm["ttft_ms"][p], t2["ttft_ms"][p])
    return out


def comparison(level: dict) -> dict:
    """Routed (and the cascade) over all-tier-2 at one level: >1 is more (throughput), <1 is less (latency)."""
    arms = level["arms"]
    t2 = arms[ALL_TIER2]["overall"]
    out = {"load": level["load"], **_ratios(arms[ROUTED]["overall"], t2), "routed_tier2_share": arms[ROUTED]["tier_split"].get("tier2")}
    if CASCADE in arms:
        c = arms[CASCADE]
        out[CASCADE] = {**_ratios(c["overall"], t2), "tier2_share": c["tier_split"].get("tier2"), "escalation_share": c["escalation_share"],
                        "tier1_tokens_on_escalated": c["tier1_tokens_on_escalated"], "paths": c["paths"]}  # fmt: skip
    return out


def run(cfg: LoadTestConfig, log=print, transport: httpx.AsyncBaseTransport | None = None) -> dict:
    return asyncio.run(run_session(cfg, log, transport))
