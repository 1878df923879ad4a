"""The results as text tables, and as a JSON file."""

from __future__ import annotations

import json
from pathlib import Path

from app.loadtest.hostcpu import describe


def _ms(v) -> str:
    return "-" if v is None else f"{v:.0f}"


def _num(v, fmt="{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def level_table(summary: dict, unit: str) -> str:
    """One arm at one level: overall and per tier."""
    head = (f"{summary['arm']} @ {summary['load']:g} {unit}: sent {summary['sent']}, dropped {summary['dropped']}, "
            f"wall {summary['wall_s']:.1f} s")  # fmt: skip
    groups = [("all", summary["overall"], None)] + [(g, s, summary["tier_split"].get(g)) for g, s in summary["by_tier"].items()]
    w = max(14, *(len(g) + 2 for g, _, _ in groups))
    cols = f"{'group':<{w}}{'n':>5}{'ok':>5}{'req/s':>8}{'e2e p50':>9}{'p95':>7}{'p99':>7}{'ttft p50':>10}{'p95':>7}{'p99':>7}{'out tok/s':>11}{'share':>7}"
    rows = [head, cols]
    for name, s, share in groups:
        e, t = s["e2e_ms"], s["ttft_ms"]
        rows.append(
            f"{name:<{w}}{s['requests']:>5}{s['ok']:>5}{s['throughput_rps']:>8.2f}{_ms(e['p50']):>9}{_ms(e['p95']):>7}{_ms(e['p99']):>7}"
            f"{_ms(t['p50']):>10}{_ms(t['p95']):>7}{_ms(t['p99']):>7}{s['output_tokens_per_s']:>11.1f}"
            f"{'' if share is None else f'{100 * share:.0f}%':>7}"
        )
    if summary.get("paths"):
        rows.append(paths_line(summary))
    errs = summary["overall"]["errors_by_kind"]
    rows.append("errors: " + (", ".join(f"{k} x{v}" for k, v in sorted(errs.items())) if errs else "none"))
    return "\n".join(rows)


COMPARE_ROWS = [
    ("throughput (req/s)", "throughput_rps", None, "{:.2f}"),
    ("e2e p50 (ms)", "e2e_ms", "p50", "{:.0f}"),
    ("e2e p95 (ms)", "e2e_ms", "p95", "{:.0f}"),
    ("e2e p99 (ms)", "e2e_ms", "p99", "{:.0f}"),
    ("TTFT p50 (ms)", "ttft_ms", "p50", "{:.0f}"),
    ("TTFT p95 (ms)", "ttft_ms", "p95", "{:.0f}"),
    ("TTFT p99 (ms)", "ttft_ms", "p99", "{:.0f}"),
    ("output tokens/s", "output_tokens_per_s", None, "{:.1f}"),
    ("errors", "errors", None, "{:d}"),
]


def paths_line(summary: dict) -> str:
    """Cascade paths the answers reported, the escalation share and tier-1 tokens spent on escalated requests."""
    paths = ", ".join(f"{p} x{n}" for p, n in summary["paths"].items())
    spent = summary.get("tier1_tokens_on_escalated")
    extra = f"; tier-1 tokens on escalated: {spent} ({summary['tier1_tokens_per_escalated']:g} each)" if spent is not None else ""
    share = summary.get("escalation_share")
    return f"paths: {paths}; escalated {'-' if share is None else f'{100 * share:.1f}%'}{extra}"


def _cell(s: dict, key: str, sub: str | None):
    v = s["overall"][key]
    return v[sub] if sub else v


def _split(s: dict) -> str:
    return ", ".join(f"{g} {100 * v:.0f}%" for g, v in s["tier_split"].items()) or "-"


def compare_table(level: dict, unit: str, markdown: bool = False) -> str:
    """All-tier-2, routed (and the cascade) side by side at one level, each over all-tier-2."""
    t2 = level["arms"]["all-tier2"]
    others = [a for a in ("routed", "cascade") if a in level["arms"]]
    lines = []
    for label, key, sub, fmt in COMPARE_ROWS:
        base, vals = _cell(t2, key, sub), [_cell(level["arms"][a], key, sub) for a in others]
        if base is None and all(v is None for v in vals):
            continue
        ratios = [f"{v / base:.2f}" if base not in (None, 0) and v is not None else "-" for v in vals]
        lines.append((label, _num(base, fmt), *(_num(v, fmt) for v in vals), *ratios))
    lines.append(("tier split", _split(t2), *(_split(level["arms"][a]) for a in others), *([""] * len(others))))
    if "cascade" in others:
        c = level["arms"]["cascade"]
        esc = c.get("escalation_share")
        pad = [""] * (len(others) - 1)
        lines.append(("escalated (cascade)", "", *pad, "-" if esc is None else f"{100 * esc:.1f}%", *([""] * len(others))))
        spent = c.get("tier1_tokens_on_escalated")
        lines.append(("tier-1 tok. escalated", "", *pad, "-" if spent is None else str(spent), *([""] * len(others))))
    if markdown:
        head = ["all tier 2", *others, *(f"{a} / all tier 2" for a in others)]
        out = [f"| at {level['load']:g} {unit} | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
        out += ["| " + " | ".join(row) + " |" for row in lines]
        return "\n".join(out)
    head = f"{'at ' + format(level['load'], 'g') + ' ' + unit:<22}{'all tier 2':>22}" + "".join(f"{a:>22}" for a in others)
    out = [head + "".join(f"{a + '/all-t2':>15}" for a in others)]
    n = 1 + len(others)
    out += [f"{row[0]:<22}" + "".join(f" {x:>21}" for x in row[1 : n + 1]) + "".join(f" {x:>14}" for x in row[n + 1 :]) for row in lines]  # a wide cell keeps a space
    return "\n".join(out)


def capacity_text(cap: dict) -> str:
    ms = cap.get("server_router_ms") or {}
    lines = [
        f"router capacity at concurrency {cap['concurrency']} ({cap['rounds']} interleaved rounds of {cap['requests_per_round']}, medians):",
        f"  /v1/route {cap['decisions_per_s']:.1f} decisions/s, /healthz {cap['healthz_per_s']:.1f}/s on the same ingress: "
        f"ratio {cap['route_to_healthz_ratio']:.2f}",
        f"  {cap['decisions_per_s_per_core']:.1f} decisions/s per core over {cap['router_cores']:g} cores ({cap['router_cores_source']})",
        f"  router latency in the ingress (x-tierroute-router-latency-ms): p50 {_ms(ms.get('p50'))} ms, p99 {_ms(ms.get('p99'))} ms",
        f"  CPU: {describe(cap['host_cpu'])}",
    ]
    if cap.get("llm_consulted_share") is not None:
        lines.append(f"  decisions that consulted the router LLM: {100 * cap['llm_consulted_share']:.1f}%")
    if cap["errors_by_kind"]:
        lines.append("  errors: " + ", ".join(f"{k} x{v}" for k, v in sorted(cap["errors_by_kind"].items())))
    return "\n".join(lines)


def text_report(results: dict) -> str:
    unit = "req/s" if results["loop"] == "open" else "in flight"
    if not results["levels"]:
        unit = ""
    parts = [f"tierroute loadtest: {results['url']}, {results['requests_in_mix']} requests in the mix, "
             f"{'streaming' if results['stream'] else 'not streaming'}, max_tokens {results['max_tokens']}; "
             f"CPU {describe(results['host_cpu'])}"]  # fmt: skip
    for level in results["levels"]:
        parts += [level_table(s, unit) for s in level["arms"].values()]
        if results.get("comparison"):
            parts.append(compare_table(level, unit))
    if results.get("router_capacity"):
        parts.append(capacity_text(results["router_capacity"]))
    return "\n\n".join(parts)


def write_json(results: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")
    return path
