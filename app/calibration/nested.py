"""Honest figures: the whole fit (choice and calibration) run again inside an outer cross-validation.

Neither the choice of candidate nor the calibration ever sees the prompts it is scored on. Per
source, :func:`source_report` gives the nested figure beside the plain cross-validated figure of
the best candidate (chosen on the same folds it is scored on), prompt length and random, and the
lift over length with a paired bootstrap interval; :func:`format_nested` is its text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from app.calibration.fit import LABEL_PRIOR, fit_router
from app.calibration.metrics import format_lift, length_scores, mean_lift_interval, random_baseline
from app.calibration.prepared import Prepared, folds, source_figures
from app.calibration.selection import KindChoice, within_group_ranks
from app.routing.artifact import MIXTURE, TOP_KIND
from app.routing.router import KindsScorer

@dataclass
class Evaluation:
    oof: np.ndarray  # nested out-of-fold P(needs the large model) of every row (for the operating point)
    chosen: list[dict[str, str]]  # per outer fold: kind -> chosen candidate
    report: dict[str, dict]  # per source: nested, plain CV, length, random, lift
    other_mixing: dict = field(default_factory=dict)  # {"mixing": the other rule, "by_source": its nested report} on the same fits


def check_repeats(repeats: int) -> None:
    """The one rule for the repeats of the nested cross-validation (``calibrate --repeats``)."""
    if repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {repeats}")


def nested_cv(
    p: Prepared,
    n_outer: int = 5,
    n_inner: int = 4,
    seed: int = 0,
    family: str | None = None,
    label_prior: float = LABEL_PRIOR,
    plain: dict[str, KindChoice] | None = None,
    progress: bool = True,
    repeats: int = 1,
    mixing: str = TOP_KIND,
) -> Evaluation:
    """Score every row with a router whose choice and calibration never saw it.

    ``plain`` (the kinds' choices on all rows) adds the plain cross-validated
    figure -- the best candidate on the folds it is scored on -- beside each nested one.
    ``repeats`` > 1 runs it again on other outer splits (seeds ``seed + 1``, ...): on a few
    hundred rows one split's figure moves by several points; the report gives the mean and
    each repeat's figure. The out-of-fold scores (for the operating point) are the first repeat's.
    The same fits also score every fold with the other ``mixing`` rule (``Evaluation.other_mixing``).
    """
    check_repeats(repeats)
    rows = np.arange(len(p.y))
    length = length_scores(p.texts)
    other = MIXTURE if mixing == TOP_KIND else TOP_KIND
    runs, others, chosen = [], [], []
    for r in range(repeats):
        oof, alt, fold = np.zeros(len(rows)), np.zeros(len(rows)), np.zeros(len(rows), dtype=int)
        splits = folds(p, rows, n_outer, seed + r)
        desc = "nested cross-validation" + (f" {r + 1}/{repeats}" if repeats > 1 else "")
        for i, (tr, te) in enumerate(tqdm(splits, desc=desc, unit="fold", disable=not progress)):
            fit = fit_router(p, rows[tr], n_inner, seed + r, family, label_prior, mixing)
            oof[te], fold[te] = KindsScorer(fit.params)(p.emb[te], p.feats[te])[0], i
            alt[te] = KindsScorer(fit.params.model_copy(update={"mixing": other}))(p.emb[te], p.feats[te])[0]
            chosen.append({k: c.chosen.name for k, c in fit.choices.items()})
        # Each outer fold has its own model: compare a source's prompts within their fold (ranks),
        # not across the folds' scales; the length baseline is ranked the same way.
        group = np.char.add(p.src.astype(str), fold.astype(str))
        runs.append((oof, within_group_ranks(oof, group), within_group_ranks(length, group)))
        others.append(within_group_ranks(alt, group))
    report = source_report(p, [r[1] for r in runs], [r[2] for r in runs], plain)
    other_report = source_report(p, others, [r[2] for r in runs])
    return Evaluation(runs[0][0], chosen, report, {"mixing": other, "by_source": other_report})


def source_report(
    p: Prepared, runs: list[np.ndarray], lengths: list[np.ndarray], plain: dict[str, KindChoice] | None = None
) -> dict[str, dict]:
    """Per source: the router's figure, prompt length, random, and the lift over length with a 90% interval.

    ``runs`` and ``lengths`` hold one array of scores per repeat of the nested cross-validation
    (router and prompt length, ranked on that repeat's folds): the figures are means over the
    repeats, with each repeat's router figure beside them when there is more than one.
    """
    nested = [source_figures(p, s) for s in runs]
    base = [source_figures(p, b) for b in lengths]
    out: dict[str, dict] = {}
    for key in nested[0]:
        source, metric = key.rsplit(" ", 1)
        m = p.src == source
        row = {"metric": metric, "n": int(m.sum()), "router": float(np.mean([r[key] for r in nested]))}
        row["prompt length"] = float(np.mean([b[key] for b in base]))
        if len(runs) > 1:
            row["router by repeat"] = [r[key] for r in nested]
        if plain is not None:
            table = plain[p.kind[m][0]].table
            row["plain CV (best candidate)"] = max(t[key] for t in table.values() if key in t)
        if metric == "APGR":
            row["random"] = random_baseline(p.weak[m], p.strong[m])["apgr"]
            row["lift over length"] = mean_lift_interval([s[m] for s in runs], [b[m] for b in lengths], p.weak[m], p.strong[m])
        else:
            row["random"] = 0.5
        out[source] = row
    return out


def format_nested(report: dict[str, dict]) -> str:
    repeats = max((len(r.get("router by repeat", [0])) for r in report.values()), default=1)
    head = f"{'source':<26}{'metric':>7}{'n':>6}{'nested':>9}{'plain CV':>10}{'length':>9}{'random':>9}   lift over length [90% CI]"
    lines = [head + (f"   nested in each of {repeats} repeats" if repeats > 1 else "")]
    for s, r in report.items():
        lift = r.get("lift over length")
        li = format_lift(lift) if lift else f"{r['router'] - r['prompt length']:+.3f}"
        plain = r.get("plain CV (best candidate)")
        each = "   " + " ".join(f"{v:.3f}" for v in r["router by repeat"]) if "router by repeat" in r else ""
        lines.append(
            f"{s:<26}{r['metric']:>7}{r['n']:>6}{r['router']:>9.3f}{(f'{plain:.3f}' if plain is not None else '-'):>10}"
            f"{r['prompt length']:>9.3f}{r['random']:>9.3f}   {li:<26}{each}".rstrip()
        )
    return "\n".join(lines)
