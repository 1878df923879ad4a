"""``tierroute evaluate --ladder``: a ladder of tiers against each fixed tier and its two-tier sub-ladders.

Per source, every router is nested: in each outer fold, per boundary k, the scorer of P(tier k is not
enough) is chosen and fitted on the training rows only (:func:`app.calibration.verifier_fit.choose` over
its candidates, inner cross-validation), its inner out-of-fold scores on those rows set the thresholds
for each cost budget (:mod:`app.calibration.ladder_policy`), and the rows held out are served with them.
The curve is then quality against cost (relative to sending everything to the reference top tier) over
the budgets, on held-out rows only.

Scorers (:data:`VARIANTS`): ``cascade: verifier`` (tier k answers; the verifier's text features of that
answer, as the two-tier verifier reads them), ``cascade: answer length``, ``route: embedding`` (before
generation: a logistic model over the prompt's MiniLM embedding and length features), ``route: prompt
length`` and ``route: random``. Each two-tier sub-ladder gets its own nested router of the same kind.

Headline figures (:mod:`app.calibration.ladder_report`): the cost at which a curve first reaches the top
tier's quality (and 99%, 95% of it), and the held-out quality at a few budgets, with bootstrap intervals.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold

from app.calibration.ladder_data import LadderData
from app.calibration.ladder_policy import evaluate_grid, final_tier, grid, outcome, paid, pick_budget
from app.calibration.verifier_fit import Candidate, Design, candidates, choose, expert_scores, fit_expert
from app.routing.text import FEATURE_NAMES, feature_matrix
from app.verification.verifier import Answer, answer_features


@dataclass(frozen=True)
class Variant:
    name: str
    mode: str  # route | cascade
    scorer: str  # verifier | answer-length | embedding | length | random


VARIANTS = (
    Variant("cascade: verifier", "cascade", "verifier"),
    Variant("cascade: answer length", "cascade", "answer-length"),
    Variant("route: embedding", "route", "embedding"),
    Variant("route: prompt length", "route", "length"),
    Variant("route: random", "route", "random"),
)
BUDGETS = np.round(np.concatenate([np.linspace(0.005, 0.1, 20), np.linspace(0.11, 1.0, 90), np.linspace(1.02, 1.6, 30)]), 4)
ROUTE_C = (0.01, 0.03, 0.1)


@dataclass
class SourceInputs:
    """One source's rows as the evaluation reads them (features computed once, lazily, per model)."""

    data: LadderData
    costs: dict[str, np.ndarray]  # model -> USD per row
    emb: np.ndarray | None = None  # prompt embeddings (route: embedding)
    _feats: dict[str, list[dict[str, float]]] = field(default_factory=dict)

    def score(self, model: str) -> np.ndarray:
        return np.array([r.scores[model] for r in self.data.rows], dtype=float)

    def answer_feats(self, model: str) -> list[dict[str, float]]:
        if model not in self._feats:
            missing = sum(model not in r.answers for r in self.data.rows)
            if missing:
                raise ValueError(f"the cascade needs {model}'s answers: {missing} rows lack them ('answers' / '<col>_answer')")
            self._feats[model] = [answer_features(Answer(r.prompt, r.answers[model])) for r in self.data.rows]
        return self._feats[model]


def boundary_design(inp: SourceInputs, tiers: list[str], k: int, scorer: str) -> Design:
    """The rows as boundary k's scorer reads them: label ``score_k < max(scores above)``."""
    weak = inp.score(tiers[k])
    strong = np.max([inp.score(m) for m in tiers[k + 1 :]], axis=0)
    if scorer == "verifier":
        return Design(inp.answer_feats(tiers[k]), None, weak, strong)
    pf = feature_matrix([r.prompt for r in inp.data.rows])
    feats = [dict(zip(FEATURE_NAMES, map(float, row))) for row in pf]
    return Design(feats, inp.emb, weak, strong)


def scorer_candidates(scorer: str) -> list[Candidate]:
    if scorer == "verifier":
        return candidates(False, False)
    # "answer" only tells Design.matrix to append the design's embeddings: here they are the prompt's
    return [Candidate(tuple(FEATURE_NAMES), "needs_strong", C, "answer", f"needs_strong prompt features+embedding C={C}") for C in ROUTE_C]


def _inner_oof(c: Candidate, d: Design, idx: np.ndarray, n_inner: int, seed: int) -> np.ndarray:
    y = d.needs_strong[idx]
    k = max(2, min(n_inner, int(y.sum()), int(len(y) - y.sum())))
    oof = np.zeros(len(idx))
    if y.sum() < 2 or len(y) - y.sum() < 2:  # one class (almost): a constant score
        return oof + float(y.mean())
    for tr, te in StratifiedKFold(k, shuffle=True, random_state=seed).split(idx, y):
        oof[te] = expert_scores(fit_expert(c, d, idx[tr]), c, d, idx[te])
    return oof


def fit_boundary(inp: SourceInputs, tiers: list[str], k: int, scorer: str, tr: np.ndarray, te: np.ndarray, n_inner: int, seed: int, fold: int = 0):
    """(scores on the training rows, out of fold within them; scores on the held-out rows; what was chosen)."""
    if scorer == "random":
        rng = np.random.default_rng([seed, fold, k])
        return rng.random(len(tr)), rng.random(len(te)), "random"
    if scorer == "length":
        n = np.array([len(r.prompt) for r in inp.data.rows], dtype=float)
        return n[tr], n[te], "prompt length"
    if scorer == "answer-length":
        n = np.array([len(r.answers.get(tiers[k], "")) for r in inp.data.rows], dtype=float)
        return n[tr], n[te], "answer length"
    d = boundary_design(inp, tiers, k, scorer)
    best, _ = choose(scorer_candidates(scorer), d, tr, n_inner, seed)
    oof = _inner_oof(best, d, tr, n_inner, seed)
    return oof, expert_scores(fit_expert(best, d, tr), best, d, te), best.name


@dataclass
class Served:
    """A router's held-out routes: per row and budget, what it paid and the score of its answer."""

    name: str
    tiers: list[str]
    mode: str
    paid: np.ndarray  # rows x budgets (USD)
    quality: np.ndarray  # rows x budgets
    chosen: list[str] = field(default_factory=list)

    def curve(self, ref_cost: np.ndarray, idx: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        idx = np.arange(len(ref_cost)) if idx is None else idx
        return self.paid[idx].sum(0) / ref_cost[idx].sum(), self.quality[idx].mean(0)


def nested_serve(inp: SourceInputs, tiers: list[str], v: Variant, n_outer: int, n_inner: int, seed: int, cache: dict, ref: str | None = None) -> Served:
    """Held-out routes of a ``v`` ladder over ``tiers`` at every budget in :data:`BUDGETS` (nested: see the module).
    Budgets are relative to the cost of model ``ref`` (default: the top of ``tiers``; a sub-ladder gets its ladder's)."""
    ref_cost = inp.costs[ref or tiers[-1]]
    n = len(inp.data.rows)
    outcomes = np.stack([inp.score(m) for m in tiers], axis=1)
    costs = np.stack([inp.costs[m] for m in tiers], axis=1)
    paid_ = np.zeros((n, len(BUDGETS)))
    qual = np.zeros((n, len(BUDGETS)))
    chosen = []
    for fold, (tr, te) in enumerate(KFold(n_outer, shuffle=True, random_state=seed).split(np.arange(n))):
        s_tr = np.zeros((len(tr), len(tiers) - 1))
        s_te = np.zeros((len(te), len(tiers) - 1))
        for k in range(len(tiers) - 1):
            key = (v.scorer, tiers[k], tuple(sorted(tiers[k + 1 :])), fold)
            if key not in cache:
                cache[key] = fit_boundary(inp, tiers, k, v.scorer, tr, te, n_inner, seed, fold)
            s_tr[:, k], s_te[:, k], name = cache[key]
            chosen.append(f"fold {fold} boundary {k}: {name}")
        combos = grid(s_tr)
        rel, q = evaluate_grid(s_tr, outcomes[tr], costs[tr], v.mode, combos, ref=ref_cost[tr])
        for b, budget in enumerate(BUDGETS):
            f = final_tier(s_te, combos[pick_budget(rel, q, budget)])
            paid_[te, b] = paid(costs[te], f, v.mode)
            qual[te, b] = outcome(outcomes[te], f)
    label = f"{v.name}: {' > '.join(tiers)}"
    return Served(label, list(tiers), v.mode, paid_, qual, chosen)


def sub_ladders(tiers: list[str]) -> list[list[str]]:
    return [list(p) for p in itertools.combinations(tiers, 2)]


def fixed_points(inp: SourceInputs, tiers: list[str], ref_cost: np.ndarray) -> dict[str, tuple[float, float]]:
    return {m: (float(inp.costs[m].sum() / ref_cost.sum()), float(inp.score(m).mean())) for m in tiers}


def plot(source: str, tiers: list[str], served: dict[str, Served], fixed: dict, ref_cost, top_q: float, path: Path, res: dict) -> Path:
    """Two panels: the main variant's ladder against its two-tier sub-ladders; every variant's ladder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_variant = res["by_variant"]
    main = next(iter(by_variant))
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.6), sharey=True)
    panels = [
        (axes[0], [by_variant[main]["ladder"]] + by_variant[main]["subs"], f"{main}: ladder vs two-tier sub-ladders"),
        (axes[1], [t["ladder"] for t in by_variant.values()], "every router's ladder"),
    ]
    for ax, names, title in panels:
        for i, name in enumerate(names):
            s = served[name]
            c, q = s.curve(ref_cost)
            ax.plot(c, q, "-" if s.mode == "cascade" else "--", lw=2.2 if i == 0 or ax is axes[1] else 1.0, label=name)
        for m, (c, q) in fixed.items():
            ax.plot([c], [q], "ks", ms=6)
            ax.annotate(m, (c, q), textcoords="offset points", xytext=(4, -10), fontsize=8)
        ax.axhline(top_q, color="black", lw=0.8, ls=":")
        ax.axhline(0.95 * top_q, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set(xlabel=f"cost relative to all {tiers[-1]} (log scale; a cascade pays every tier it visits)", title=title)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False)
    axes[0].set_ylabel("quality (mean score; held-out rows, nested)")
    fig.suptitle(f"{source} (n={res['n']}): {' > '.join(tiers)}; dotted: the top tier's quality and 95% of it", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def fixed_served(inp: SourceInputs, model: str) -> Served:
    n = len(inp.data.rows)
    ones = np.ones((n, len(BUDGETS)))
    return Served(f"fixed: {model}", [model], "route", inp.costs[model][:, None] * ones, inp.score(model)[:, None] * ones)


def evaluate_source(inp: SourceInputs, tiers: list[str], variants, n_outer: int, n_inner: int, seed: int, n_boot: int, cache: dict | None = None) -> dict:
    """Every variant's ladder and two-tier sub-ladders on one source; the reach table per variant. BLAS runs on one
    thread: the many small logistic fits only lose time to more (5-7x the CPU time on a busy 2-core machine)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _evaluate_source(inp, tiers, variants, n_outer, n_inner, seed, n_boot, cache)


def _evaluate_source(inp, tiers, variants, n_outer, n_inner, seed, n_boot, cache) -> dict:
    from app.calibration.ladder_report import AT_BUDGETS, FRACS, budget_table, reach_table

    cache = {} if cache is None else cache
    ref_cost = inp.costs[tiers[-1]]
    top_q = inp.score(tiers[-1])
    served, tables = {}, {}
    for v in variants:
        if v.scorer in ("verifier", "answer-length") and any(m not in r.answers for r in inp.data.rows for m in tiers[:-1]):
            continue  # no answers: no cascade
        lad = nested_serve(inp, tiers, v, n_outer, n_inner, seed, cache)
        subs = [nested_serve(inp, p, v, n_outer, n_inner, seed, cache, tiers[-1]) for p in sub_ladders(tiers)] if len(tiers) > 2 else []
        fixed = {f.name: f for f in (fixed_served(inp, m) for m in tiers)}
        group = {lad.name: lad} | {s.name: s for s in subs}
        served |= group
        table = reach_table(group | fixed, lad.name, [s.name for s in subs], ref_cost, top_q, FRACS, n_boot, seed)
        at_budget = budget_table(group, lad.name, [s.name for s in subs], ref_cost, AT_BUDGETS, n_boot, seed)
        tables[v.name] = {"ladder": lad.name, "subs": [s.name for s in subs], "targets": table, "at_budget": at_budget}
    return {
        "n": len(inp.data.rows),
        "tiers": tiers,
        "fixed": fixed_points(inp, tiers, ref_cost),
        "by_variant": tables,
        "served": served,
        "chosen": {name: sorted(set(c.split(": ", 1)[1] for c in s.chosen)) for name, s in served.items()},
        "curves": {name: dict(zip(("cost", "quality"), (np.round(a, 5).tolist() for a in s.curve(ref_cost)))) for name, s in served.items()},
        "budgets": BUDGETS.tolist(),
    }


