"""Texts about a verifier: its nested figures (``calibrate``) and its card (``tierroute show``)."""

from __future__ import annotations

from app.calibration.metrics import format_lift
from app.verification.artifact import VerifierArtifact
from app.verification.features import REQUEST_ALL, TEXT_FEATURES


def format_verifier_report(report: dict[str, dict]) -> str:
    """Per source: nested APGR of the verifier, request length, answer length, random, lifts [90% CI]."""
    head = f"{'source':<12}{'n':>6}{'verifier':>10}{'req len':>9}{'ans len':>9}{'random':>8}   {'lift over request length':<28}{'lift over answer length':<28}chosen"
    lines = ["verifier, nested cross-validation (APGR; the choice and fit never saw the rows they are scored on):", head]
    for s, r in report.items():
        reps = r.get("verifier by repeat", [])
        by = f" ({', '.join(f'{x:.3f}' for x in reps)})" if len(reps) > 1 else ""
        lines.append(
            f"{s:<12}{r['n']:>6}{r['verifier']:>10.3f}{r['request length']:>9.3f}{r['answer length']:>9.3f}{r['random']:>8.3f}   "
            f"{format_lift(r['lift over request length']):<28}{format_lift(r['lift over answer length']):<28}{'; '.join(r['chosen'])}{by}"
        )
    return "\n".join(lines)


def describe_verifier(art: VerifierArtifact) -> str:
    """The verifier's card: the pair, how kinds are told apart, each kind's expert, the threshold, the figures."""
    lines = [
        f"verifier for {art.pair.tier1} -> {art.pair.tier2} (created {art.created_at})",
        f"  escalate when P(tier 2 does better) >= {art.threshold:.4f}"
        + (f" (escalates {art.report['escalation_share']:.0%} of the calibration rows)" if "escalation_share" in art.report else ""),
        f"  kinds: {', '.join(art.experts)}" + (", told apart by a gate over the answer's format" if art.gate else ""),
        f"  embeds with {art.embedder.model_id} (the router's embedder must be the same)" if art.embedder else "  embeds nothing",
    ]
    for kind, e in art.experts.items():
        lp = any(f.startswith("lp_") for f in e.features)
        uses = "text features" + (", request features" if set(e.features) & (set(REQUEST_ALL) - set(TEXT_FEATURES)) else "")
        uses += ", the execution check (runs the request's code)" if "exec_verdict" in e.features else ""
        uses += (", log-probabilities" if lp else "") + (f", the {e.embedding.replace('_', ' + ')} embedding" if e.embedding != "none" else "")
        uses += "; tier 2's model reads the request's embedding" if e.strong_input == "request" else ""
        lines.append(f"  {kind:<10} {e.candidate}  ({e.form}; reads {uses})")
    nested = art.report.get("nested") or {}
    if nested:
        lines.append("  nested APGR per source (verifier / request length / answer length / random):")
        for s, r in nested.items():
            lines.append(f"    {s:<10} {r['verifier']:.3f} / {r['request length']:.3f} / {r['answer length']:.3f} / {r['random']:.3f}  (n={r['n']})")
    lines += describe_check(art)
    if art.report.get("command"):
        lines.append(f"  built by: {art.report['command']}")
    return "\n".join(lines)


def describe_check(art: VerifierArtifact) -> list[str]:
    """The router LLM's check: never consulted (why), or its band, weight and centre; APGR with and without it."""
    c = art.check
    if c is None:
        return ["  router LLM check: none (never consulted; fit one with `calibrate --verifier-check-llm`)"]
    f = c.fit
    if c.llm_weight == 0:
        head = f"  router LLM check ({f.get('model', '?')}, prompt {c.prompt_version}): weight 0, never consulted"
    else:
        head = (f"  router LLM check ({f.get('model', '?')}, prompt {c.prompt_version}): consulted when the score is within "
                f"{c.band} (quantiles of the calibration scores) of the threshold; score + {c.llm_weight} * (P(no) - {c.llm_center:.3f})")  # fmt: skip
    lines = [head]
    if f.get("apgr_without_llm"):
        lines.append(f"    on {f['rows']} checked answers, APGR out of fold (nested verifier scores) without / with the check:")
        for k in sorted(f["apgr_without_llm"]):
            lines.append(f"    {k:<16} {f['apgr_without_llm'][k]:.3f} / {f['apgr_with_llm_cv'][k]:.3f}")
        lines.append(f"    gain {f['gain']:+.3f} (se {f['gain_se']:.3f}); shuffled P(no) up to {f['shuffled_ratings_gain']['max']:+.3f}; p = {f['p_value']:.2f}")
    if f.get("note"):
        lines.append(f"    {f['note']}")
    return lines
