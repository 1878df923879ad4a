"""Build and judge a verifier: nested figures per source, then the fit on all rows.

Each source is a kind. Per source, :func:`nested_report` runs the whole choice (:func:`choose`) again
inside an outer cross-validation, so the figure is on rows neither the choice nor the fit saw; beside
it: the request's length, the answer's length (the simplest answer-aware verifier) and random, with the
lift over each length and a paired bootstrap interval. :func:`build_verifier` then chooses and fits
each kind's expert on all its rows, the gate over kinds (the answers' format), and the threshold (escalate the top
``escalation_share`` of calibration rows).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.model_selection import StratifiedKFold
from tqdm.auto import tqdm

from app.calibration.answers import AnswerRow
from app.calibration.metrics import mean_lift_interval, random_baseline
from app.calibration.verifier_fit import Candidate, Design, apgr_of, candidates, choose, expert_scores, fit_expert, fit_gate
from app.routing.artifact import EmbedderInfo
from app.verification.artifact import Pair, VerifierArtifact
from app.verification.verifier import Verifier, embedding_text

Embed = Callable[[list[str]], np.ndarray]


def designs(rows: list[AnswerRow], embed: Embed | None, progress: bool = True) -> dict[str, tuple[list[int], Design]]:
    """Per source: its row indices and its :class:`Design` (answers' ends and requests embedded when ``embed`` is given)."""
    out = {}
    for source in tqdm(sorted({r.source for r in rows}), desc="answer features", unit="source", disable=not progress):
        idx = [i for i, r in enumerate(rows) if r.source == source]
        emb = req = None
        if embed is not None:
            emb = embed([embedding_text(rows[i].answer, "answer") for i in idx])
            req = embed([embedding_text(rows[i].answer, "request") for i in idx])
        out[source] = (idx, Design.of([rows[i] for i in idx], emb, req))
    return out


def _nested_scores(cands: list[Candidate], d: Design, n_outer: int, n_inner: int, seed: int) -> tuple[np.ndarray, list[str]]:
    y = d.needs_strong
    rows = np.arange(len(y))
    oof, chosen = np.zeros(len(y)), []
    for tr, te in StratifiedKFold(n_outer, shuffle=True, random_state=seed).split(rows, y):
        best, _ = choose(cands, d, rows[tr], n_inner, seed)
        oof[te] = expert_scores(fit_expert(best, d, rows[tr]), best, d, rows[te])
        chosen.append(best.name)
    return oof, chosen


def nested_report(
    ds: dict[str, tuple[list[int], Design]], rows: list[AnswerRow], cands: list[Candidate],
    n_outer: int = 5, n_inner: int = 4, repeats: int = 1, seed: int = 0, progress: bool = True,
) -> tuple[dict[str, dict], dict[str, np.ndarray]]:  # fmt: skip
    """Per source: nested APGR of the verifier beside request length, answer length and random; and
    the first repeat's nested out-of-fold scores (for ``evaluate --cascade``)."""
    report, oofs = {}, {}
    for source, (idx, d) in tqdm(ds.items(), desc="nested cross-validation", unit="source", disable=not progress):
        runs = [_nested_scores(cands, d, n_outer, n_inner, seed + r) for r in range(repeats)]
        oofs[source] = runs[0][0]
        req_len = np.array([len(rows[i].answer.request) for i in idx], dtype=float)
        ans_len = np.array([len(rows[i].answer.answer) for i in idx], dtype=float)
        scores = [r[0] for r in runs]
        report[source] = {
            "n": len(idx),
            "verifier": float(np.mean([apgr_of(s, d.weak, d.strong) for s in scores])),
            "verifier by repeat": [apgr_of(s, d.weak, d.strong) for s in scores],
            "request length": apgr_of(req_len, d.weak, d.strong),
            "answer length": apgr_of(ans_len, d.weak, d.strong),
            "random": random_baseline(d.weak, d.strong)["apgr"],
            "lift over request length": mean_lift_interval(scores, [req_len] * len(scores), d.weak, d.strong),
            "lift over answer length": mean_lift_interval(scores, [ans_len] * len(scores), d.weak, d.strong),
            "chosen": sorted(set(sum((r[1] for r in runs), []))),
        }
    return report, oofs


def build_verifier(
    rows: list[AnswerRow], pair: tuple[str, str], embed: Embed | None = None, embedder: EmbedderInfo | None = None,
    escalation_share: float = 0.25, n_inner: int = 4, seed: int = 0, report: dict | None = None, progress: bool = True,
    with_embedding: bool = False, command: str | None = None, data: dict[str, str] | None = None,
    ds: dict[str, tuple[list[int], Design]] | None = None,
) -> VerifierArtifact:  # fmt: skip
    """Choose and fit each source's expert on all its rows; the gate (when more than one source) over the
    answers' format; the threshold that escalates ``escalation_share`` of the calibration rows. ``ds``: the
    rows' :func:`designs`, when the caller has them already (the nested report's)."""
    ds = ds if ds is not None else designs(rows, embed if with_embedding else None, progress)
    with_lp = all(r.answer.logprobs for r in rows)
    cands = candidates(with_lp, with_embedding)
    experts, tables = {}, {}
    for source, (idx, d) in tqdm(ds.items(), desc="fit verifier", unit="source", disable=not progress):
        best, tables[source] = choose(cands, d, np.arange(len(idx)), n_inner, seed)
        experts[source] = fit_expert(best, d, np.arange(len(idx)))
    gate = fit_gate([r.answer for r in rows], [r.source for r in rows]) if len(experts) > 1 else None
    art = VerifierArtifact(
        pair={"tier1": pair[0], "tier2": pair[1]}, embedder=embedder if any(e.embeds for e in experts.values()) else None, gate=gate,
        experts=experts, threshold=0.5, report={"command": command, "data": data or {}, "nested": report or {},
        "candidates": len(cands), "escalation_share": escalation_share, "inner_cv": tables},
    )  # fmt: skip
    scores = [v.score for v in Verifier(art).verify([r.answer for r in rows], embed)]
    art.threshold = threshold_for_share(np.asarray(scores), escalation_share)
    # where a score lies among the calibration rows' (101 quantiles): the router LLM's check band is in these
    art.report["score_quantiles"] = np.quantile(np.asarray(scores, dtype=float), np.linspace(0, 1, 101)).tolist()
    return art


def threshold_for_share(scores: np.ndarray, share: float) -> float:
    """The lowest score at or above which at most ``share`` of ``scores`` lie (ties never push it over)."""
    values = np.unique(scores)
    ok = [v for v in values if (scores >= v).mean() <= share + 1e-9]
    return float(ok[0]) if ok else float(np.nextafter(values[-1], np.inf))


__all__ = ["Pair", "build_verifier", "designs", "nested_report"]
