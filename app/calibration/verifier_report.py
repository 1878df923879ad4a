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
    ]
    for kind, e in art.experts.items():
        lp = any(f.startswith("lp_") for f in e.features)
        uses = "text features" + (", request features" if set(e.features) & (set(REQUEST_ALL) - set(TEXT_FEATURES)) else "")
        uses += (", log-probabilities" if lp else "") + (f", the {e.embedding.replace('_', ' + ')} embedding" if e.embedding != "none" else "")
        lines.append(f"  {kind:<10} {e.candidate}  ({e.form}; reads {uses})")
    nested = art.report.get("nested") or {}
    if nested:
        lines.append("  nested APGR per source (verifier / request length / answer length / random):")
        for s, r in nested.items():
            lines.append(f"    {s:<10} {r['verifier']:.3f} / {r['request length']:.3f} / {r['answer length']:.3f} / {r['random']:.3f}  (n={r['n']})")
    if art.report.get("command"):
        lines.append(f"  built by: {art.report['command']}")
    return "\n".join(lines)
