"""What an artifact is and how far to trust it: the card ``tierroute show`` prints.

Everything comes from what ``calibrate`` recorded in the artifact: the model pair whose outcomes
it was calibrated on (when recorded), the kinds of traffic it knows, each kind's expert and how
they make one score, the operating point (the traffic its threshold was set on and
each source's tier-2 share there), whether the router-LLM hybrid was fitted, and per source
the honest (nested) figure beside prompt length and random, with a verdict read from the
interval of the lift over length. Where the router does not beat length the card says so:
the user's own outcomes are then the way to a better router.
"""

from __future__ import annotations

from typing import Any

from app.calibration.metrics import format_lift
from app.routing.artifact import Artifact

BEATS = "beats prompt length"
TIES = "no clear difference from prompt length"
LOSES = "loses to prompt length"
NO_INTERVAL = "no interval recorded"
LABELS = "agreement with simple/complex labels, not outcomes"


def verdict(row: dict[str, Any]) -> str:
    """How a source's nested figure compares with prompt length, by the interval of the lift."""
    if row.get("metric") != "APGR":
        return LABELS
    lift = row.get("lift over length")
    if not lift:
        return NO_INTERVAL
    if lift["low"] > 0:
        return BEATS
    if lift["high"] < 0:
        return LOSES
    return TIES


def card(art: Artifact) -> dict[str, Any]:
    """The artifact's card as plain data (``tierroute show --json``)."""
    build, op = art.build, art.operating_point
    quality = {}
    for source, row in build.get("nested_cross_validation", {}).get("by_source", {}).items():
        lift = row.get("lift over length") or {}
        quality[source] = {
            "metric": row.get("metric"),
            "n": row.get("n"),
            "router": row.get("router"),
            "prompt length": row.get("prompt length"),
            "random": row.get("random"),
            "lift": lift.get("lift"),
            "low": lift.get("low"),
            "high": lift.get("high"),
            "repeats": len(row.get("router by repeat", [])) or 1,
            "verdict": verdict(row),
        }
    weak = [s for s, q in quality.items() if q["verdict"] in (TIES, LOSES)]
    kinds = {k: {"expert": e.candidate, "calibrated on": "outcomes" if e.outcomes else "labels"} for k, e in art.scorer.experts.items()}
    return {
        "created_at": art.created_at,
        "tierroute_version": build.get("tierroute_version"),
        "command": build.get("command"),
        "embedder": art.embedder.model_id,
        "pair": dict(zip(("tier1", "tier2"), art.pair)) if art.pair else None,
        "mixing": art.scorer.mixing,
        "kinds": kinds,
        "threshold": art.threshold,
        "tier2_share": art.tier2_share,
        "traffic": op.get("traffic"),
        "tier2_share_by_source": op.get("tier2_share_by_source", {}),
        "router_llm": {"fitted": art.hybrid.fitted, "llm_weight": art.hybrid.llm_weight, "note": art.hybrid.fit.get("note")},
        "data_files": len(build.get("data", {}).get("checksums", {})),
        "quality": quality,
        "not_better_than_length": weak,
        "labels_only": [k for k, v in kinds.items() if v["calibrated on"] == "labels"],
    }


def format_card(c: dict[str, Any]) -> str:
    lines = [f"artifact built {c['created_at']} by tierroute {c['tierroute_version'] or '?'}; embedder {c['embedder']}"]
    if c["command"]:
        lines.append(f"  command: {c['command']}")
    if c["pair"]:
        lines.append(f"calibrated for tier 1 {c['pair']['tier1']} / tier 2 {c['pair']['tier2']} (their outcomes; other models: calibrate on yours)")
    how = "the most likely kind's expert" if c["mixing"] == "top-kind" else "the gate-weighted mixture of the experts (older artifacts)"
    lines.append(f"kinds of traffic and their experts (score: {how}):")
    width = max(12, *(len(k) for k in c["kinds"]))
    lines += [f"  {k:<{width}} {v['expert']} (calibrated on {v['calibrated on']})" for k, v in c["kinds"].items()]
    lines.append(f"threshold {c['threshold']:.4f}: {100 * c['tier2_share']:.1f}% tier 2 on {c['traffic'] or 'its calibration traffic'}")
    if c["tier2_share_by_source"]:
        lines.append("  per source: " + ", ".join(f"{s} {100 * v:.1f}%" for s, v in c["tier2_share_by_source"].items()))
    llm = c["router_llm"]
    lines.append(
        f"router LLM: fitted, weight {llm['llm_weight']:.2f}" if llm["fitted"] else f"router LLM: {llm['note'] or 'not fitted'}"
    )
    if c["quality"]:
        lines.append("quality on prompts the router was not chosen or fitted on (nested cross-validation):")
        lines.append(f"  {'source':<28}{'metric':>7}{'n':>6}{'router':>8}{'length':>8}{'random':>8}   lift [90% CI]             verdict")
    else:
        lines.append("quality: no nested cross-validation recorded in this artifact")
    for s, q in c["quality"].items():
        lift = format_lift(q) if q["lift"] is not None else "-"
        random = f"{q['random']:.3f}" if q["random"] is not None else "-"
        lines.append(
            f"  {s:<28}{q['metric']:>7}{q['n']:>6}{q['router']:>8.3f}{q['prompt length']:>8.3f}{random:>8}   {lift:<26}{q['verdict']}"
        )
    if c["not_better_than_length"]:
        lines.append(
            "on traffic like " + ", ".join(c["not_better_than_length"]) + " this artifact routes no better than prompt length: "
            "calibrate on your own outcomes (README: Calibrating on your own traffic)"
        )
    if c["labels_only"]:
        lines.append(
            "kinds learnt from simple/complex labels only (" + ", ".join(c["labels_only"]) + "): their scores say how much a "
            "prompt resembles the complex examples, not whether your small model fails on it"
        )
    return "\n".join(lines)
