"""The router's quality in production, from shadow-evaluation outcome logs (``tierroute evaluate --outcomes``).

Each row (written by :mod:`app.serve.shadow`) is a routed request that both tiers answered and a
judge compared in both orders: ``weak``/``strong`` as ``tierroute label`` writes them, and the tier
it was routed to. From them, with 90% Wilson intervals:

* ``tier1_ok`` -- among requests routed to tier 1, the share whose tier-1 answer was judged at least
  as good as tier 2's (the rest is the quality the router gave away);
* ``tier2_avoidable`` -- among requests routed to tier 2, the share tier 1 would have served as well
  (the cost the router could still save);
* ``as_good_as_tier2`` -- all sampled requests whose served answer was as good as tier 2's.

The sample is the shadow's: a uniform share of routed chat requests whose answers fitted its
``max_tokens`` and budget; a judge's verdict is an estimate (see docs/calibration.md: judging and its biases).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from scipy.stats import binomtest


def outcome_files(paths: list[str]) -> list[Path]:
    """The JSONL files named, a directory standing for every ``*.jsonl`` in it (rotated ones included)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(p.glob("*.jsonl"))
        elif p.is_file():
            out.append(p)
        else:
            raise ValueError(f"--outcomes {p}: no such file or directory")
    if not out:
        raise ValueError(f"--outcomes {' '.join(paths)}: no .jsonl files")
    return out


def read_outcomes(paths: list[str]) -> tuple[list[dict], int]:
    """(rows with a routed tier and outcomes, lines skipped: torn, or not shadow outcomes)."""
    rows, skipped = [], 0
    for f in outcome_files(paths):
        for line in f.read_text(encoding="utf-8").splitlines():
            try:
                r = json.loads(line)
                if r["routed_tier"] in (1, 2) and 0 <= float(r["weak"]) <= 1 and 0 <= float(r["strong"]) <= 1:
                    rows.append(r)
                    continue
            except (ValueError, KeyError, TypeError):
                pass
            skipped += 1
    return rows, skipped


def share(k: int, n: int, level: float = 0.90) -> dict[str, float | int | None]:
    if n == 0:
        return {"share": None, "low": None, "high": None, "n": 0}
    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return {"share": k / n, "low": float(ci.low), "high": float(ci.high), "n": n}


def summarize_outcomes(rows: list[dict]) -> dict:
    ok = [r for r in rows if float(r["weak"]) >= float(r["strong"])]  # tier 1 at least as good (ties: tier 1 suffices)
    n1 = sum(r["routed_tier"] == 1 for r in rows)
    ok1 = sum(r["routed_tier"] == 1 for r in ok)
    n2 = len(rows) - n1
    ok2 = len(ok) - ok1
    ts = sorted(r["ts"] for r in rows if r.get("ts"))
    return {
        "rows": len(rows),
        "routed_to_tier2": share(n2, len(rows)),
        "tier1_ok": share(ok1, n1),
        "tier2_avoidable": share(ok2, n2),
        "as_good_as_tier2": share(ok1 + n2, len(rows)),
        "judges": dict(Counter(f"{r.get('judge')} ({r.get('judge_prompt')})" for r in rows)),
        "models": dict(Counter(f"{r.get('tier1_model')} / {r.get('tier2_model')}" for r in rows)),
        "from": ts[0] if ts else None,
        "to": ts[-1] if ts else None,
    }


def format_outcomes(s: dict) -> str:
    def line(name: str, v: dict, what: str) -> str:
        if v["share"] is None:
            return f"{name:<18} {'-':>7}   (no rows)  {what}"
        return f"{name:<18} {100 * v['share']:6.1f}%  [{100 * v['low']:.1f}, {100 * v['high']:.1f}]  of {v['n']:>5}  {what}"

    lines = [
        f"{s['rows']} shadow-judged requests" + (f", {s['from']} .. {s['to']}" if s["from"] else ""),
        f"judge (prompt): {', '.join(f'{k} x{v}' for k, v in s['judges'].items())}; tiers: {', '.join(s['models'])}",
        f"{'estimate':<18} {'share':>7}  [90% CI]",
        line("routed to tier 2", s["routed_to_tier2"], "sampled requests the router sent to tier 2"),
        line("tier1_ok", s["tier1_ok"], "routed to tier 1: its answer as good as tier 2's"),
        line("tier2_avoidable", s["tier2_avoidable"], "routed to tier 2: tier 1 would have served it as well"),
        line("as_good_as_tier2", s["as_good_as_tier2"], "all: the served answer as good as tier 2's"),
    ]
    return "\n".join(lines)
