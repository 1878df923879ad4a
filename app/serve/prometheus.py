"""Prometheus metrics of the ingress, through Ray Serve's metrics API (``ray.serve.metrics``).

They are exported with Ray's own metrics (prefix ``ray_``; counters end in ``_total``, histograms
in ``_bucket``/``_sum``/``_count``) and carry Serve's deployment, replica and application tags, so
Ray's Prometheus service discovery and the Ray dashboard's Grafana see them. :data:`METRICS` is
the one list of what is exported: ``dashboards/tierroute.json`` queries only these (a test checks).
"""

from __future__ import annotations

from app.serve.config import MetricsConfig, Price

SCORE_BOUNDARIES = [round(0.05 * i, 2) for i in range(1, 20)]
LATENCY_MS_BOUNDARIES = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000]

# name -> (metric type, description, tag keys, histogram boundaries); the tag ``kind`` is the kind of traffic
METRICS: dict[str, tuple[str, str, tuple[str, ...], list | None]] = {
    "tierroute_requests": ("counter", "Requests served, by the tier that served them and why it did", ("tier", "reason"), None),
    "tierroute_rejections": ("counter", "Requests answered with an error, by cause", ("cause",), None),
    "tierroute_fallbacks": ("counter", "Requests another tier served because theirs failed", ("from_tier", "to_tier", "cause"), None),
    "tierroute_complexity_score": ("histogram", "Complexity score of routed requests", ("kind",), SCORE_BOUNDARIES),
    "tierroute_router_latency_ms": ("histogram", "Time to decide a request's tier (ms)", (), LATENCY_MS_BOUNDARIES),
    "tierroute_tier_latency_ms": ("histogram", "Time a tier took to answer (a stream: its first chunk) (ms)", ("tier",), LATENCY_MS_BOUNDARIES),
    "tierroute_router_llm": ("counter", "Router-LLM consultations and fallbacks to the embedding score", ("outcome",), None),
    "tierroute_tokens": ("counter", "Tokens per tier, prompt (in) and completion (out)", ("tier", "direction"), None),
    "tierroute_cost": ("counter", "Estimated cost of served requests (served), and of the same tokens all on the top tier (all_top)", ("basis",), None),
    "tierroute_tier_cost": ("counter", "Estimated cost of served requests, by the tier that spent the tokens", ("tier",), None),
    "tierroute_cascade_paths": ("counter", "Cascade-mode requests by path (tier1, escalated, direct; not counted: routed)", ("path",), None),
    "tierroute_escalations": (
        "counter", "Escalations wanted after tier 1's answer, by verifier kind, cause (verifier, length, degraded, tier1-failed) "
        "and outcome (made, or why not: over-cap, fallback)", ("kind", "cause", "outcome"), None,
    ),
    "tierroute_verifier_score": ("histogram", "Verifier score of tier 1's answers (P(tier 2 does better))", ("kind",), SCORE_BOUNDARIES),
    "tierroute_verifier_checks": (
        "counter", "The router LLM's checks of tier 1's answers (in the verifier's band): consulted, or why the score alone "
        "decided (timeout, failed, not configured)", ("outcome",), None,
    ),
    "tierroute_escalation_tokens": ("counter", "Tokens tier 1 spent on requests then escalated (in the cost too)", ("direction",), None),
    "tierroute_shadow_outcomes": (
        "counter", "Shadow-judged requests by the tier they were routed to and the verdict (tier1_suffices|tier2_needed)",
        ("routed_tier", "verdict"), None,
    ),
    "tierroute_shadow_skipped": ("counter", "Sampled requests not shadowed, by cause (budget, busy, too_long, no_answer)", ("cause",), None),
    "tierroute_shadow_failures": ("counter", "Shadow jobs that failed, by cause (timeout, judge, error)", ("cause",), None),
    "tierroute_shadow_tokens": ("counter", "Tokens spent on shadow evaluation (other tier's answer and judge)", (), None),
    "tierroute_shadow_estimate": (
        "gauge", "This replica's running estimate: tier1_ok (routed to tier 1, judged as good as tier 2), tier2_avoidable (routed to tier 2, tier 1 as good)",
        ("estimate",), None,
    ),
}
# the cascade's metrics: exported once a cascade mode serves a request (none in route mode)
CASCADE_METRICS = {n: METRICS[n][0] for n in ("tierroute_cascade_paths", "tierroute_escalations", "tierroute_verifier_score", "tierroute_escalation_tokens")}


class Metrics:
    """The ingress's metrics; every method is a no-op when metrics are disabled."""

    def __init__(self, spec: MetricsConfig, prices: dict[int, Price] | None = None):
        """``prices``: per tier (1 = the cheapest), from the config's ladder; default ``spec``'s tier1/tier2 prices."""
        self.spec = spec
        self.prices = prices or {1: spec.tier1_price, 2: spec.tier2_price}
        self.top = max(self.prices)
        self._m = {}
        if not spec.enabled:
            return
        from ray.serve import metrics as m

        for name, (metric_type, desc, tags, bounds) in METRICS.items():
            if metric_type == "counter":
                self._m[name] = m.Counter(name, description=desc, tag_keys=tags)
            elif metric_type == "gauge":
                self._m[name] = m.Gauge(name, description=desc, tag_keys=tags)
            else:
                self._m[name] = m.Histogram(name, description=desc, boundaries=bounds, tag_keys=tags)

    def _inc(self, name: str, value: float = 1.0, **tags) -> None:
        if name in self._m and value > 0:
            self._m[name].inc(value, tags={k: str(v) for k, v in tags.items()})

    def _observe(self, name: str, value: float, **tags) -> None:
        if name in self._m:
            self._m[name].observe(value, tags={k: str(v) for k, v in tags.items()})

    def served(self, served, tier_latency_ms: float | None, usage: dict | None) -> None:
        d = served.decision
        self._inc("tierroute_requests", tier=served.tier, reason=served.reason)
        if served.fallback is not None:
            f = served.fallback
            self._inc("tierroute_fallbacks", from_tier=f.from_tier, to_tier=f.to_tier, cause=f.cause)
        if served.scored:  # also when another tier then served it
            self._observe("tierroute_complexity_score", d.complexity_score, kind=d.kind or "none")
            self._observe("tierroute_router_latency_ms", d.router_latency_ms)
            if d.llm_consulted:
                self._inc("tierroute_router_llm", outcome="consulted")
            elif d.llm_fallback:
                self._inc("tierroute_router_llm", outcome="fallback")
        if tier_latency_ms is not None:
            self._observe("tierroute_tier_latency_ms", tier_latency_ms, tier=served.tier)
        self.tokens(served.tier, usage)
        self.cascaded(served)

    def cascaded(self, served) -> None:
        """The cascade's part: path, verifier score, escalation, and tier 1's tokens on an escalated request
        (in the served cost, not in the all-tier-2 baseline: savings net of them)."""
        if served.path == "routed":  # not cascaded (every request in route mode): nothing more to count
            return
        self._inc("tierroute_cascade_paths", path=served.path)
        kind = served.verdict.kind if served.verdict is not None else "none"
        if served.verdict is not None:
            self._observe("tierroute_verifier_score", served.verdict.score, kind=kind)
            if served.verdict.check is not None:
                self._inc("tierroute_verifier_checks", outcome=served.verdict.check.replace(" ", "_"))
        if served.escalation is not None:
            outcome = "made" if served.path == "escalated" else served.reason
            self._inc("tierroute_escalations", kind=kind, cause=served.escalation, outcome=outcome)
        for tier, usage in served.spent_by_tier.items():  # tier 1's (a ladder: every tier passed on the way)
            tin, tout = self.tokens(tier, usage, baseline=False)
            self._inc("tierroute_escalation_tokens", tin, direction="in")
            self._inc("tierroute_escalation_tokens", tout, direction="out")

    def tokens(self, tier: int, usage: dict | None, baseline: bool = True) -> tuple[int, int]:
        """Count ``usage`` on ``tier`` and its cost; ``baseline``: also its cost as if the top tier had served it."""
        if not usage:
            return 0, 0
        tin, tout = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        self._inc("tierroute_tokens", tin, tier=tier, direction="in")
        self._inc("tierroute_tokens", tout, tier=tier, direction="out")
        price, big = self.prices[tier], self.prices[self.top]
        cost = (tin * price.input_per_mtok + tout * price.output_per_mtok) / 1e6
        self._inc("tierroute_cost", cost, basis="served")
        self._inc("tierroute_tier_cost", cost, tier=tier)
        if baseline:
            self._inc("tierroute_cost", (tin * big.input_per_mtok + tout * big.output_per_mtok) / 1e6, basis="all_top")
        return tin, tout

    def shadow(self, event: str, **tags) -> None:
        """The shadow evaluator's events (:class:`app.serve.shadow.Shadow` calls this)."""
        if event == "skipped":
            self._inc("tierroute_shadow_skipped", cause=tags["cause"])
        elif event == "failed":
            self._inc("tierroute_shadow_failures", cause=tags["cause"])
        elif event == "outcome":
            self._inc("tierroute_shadow_outcomes", routed_tier=tags["routed_tier"], verdict=tags["verdict"])
            self._inc("tierroute_shadow_tokens", tags["tokens"])
        elif event == "estimate" and "tierroute_shadow_estimate" in self._m:
            for name, value in tags.items():
                if value == value:  # not NaN: no outcomes yet for that tier
                    self._m["tierroute_shadow_estimate"].set(value, tags={"estimate": name})

    def rejected(self, cause: str) -> None:
        self._inc("tierroute_rejections", cause=cause)
