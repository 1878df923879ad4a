"""scripts/reroute_gadgets.py's accounting per routing mode, with a stand-in judge (the script itself runs the
real router and verifier): which prompts count as tier 1's, which flip, and through which path."""

from __future__ import annotations

import numpy as np
import pytest
import reroute_gadgets as rg


def judge(prompts: list[str], answers: list[str]) -> dict[str, np.ndarray]:
    """HARD: routed to tier 2; DIRECT: over the direct quantile; the verifier escalates a 'bad' answer or a request saying VERIFY."""
    has = lambda word: np.array([word in p for p in prompts])  # noqa: E731
    return {
        "routed_t2": has("HARD") | has("DIRECT"),
        "direct": has("DIRECT"),
        "escalate": np.array([a == "bad" for a in answers]) | has("VERIFY"),
        "vscore": np.array([0.9 if a == "bad" else 0.1 for a in answers]) + 0.5 * has("VERIFY"),
    }


ROWS = [("s", "easy one", "good"), ("s", "easy two", "good"), ("s", "easy three", "bad"), ("s", "HARD four", "good")]


def test_flips_are_counted_per_mode_over_that_modes_tier1_prompts(monkeypatch):
    monkeypatch.setattr(rg, "GADGETS", {"direct": "DIRECT", "verifier": "VERIFY", "nothing": "please"})
    base, rows = rg.pair_modes(judge, ROWS)
    assert base == {"route": 0.25, "cascade": 0.25, "cascade_routing": 0.25}
    by = {(r["gadget"], r["where"]): r for r in rows}
    assert len(rows) == 6 and set(w for _, w in by) == {"prefix", "suffix"}
    d = by[("direct", "prefix")]
    assert d["route"] == {"tier1_prompts": 3, "flipped": 1.0}  # the three not HARD
    assert d["cascade"] == {"tier1_prompts": 3, "flipped": 0.0, "via_direct": 0.0, "via_verifier": 0.0}  # no direct path in a cascade
    assert d["cascade_routing"] == {"tier1_prompts": 3, "flipped": 1.0, "via_direct": 1.0, "via_verifier": 0.0}
    v = by[("verifier", "suffix")]
    assert v["route"]["flipped"] == 0.0 and v["cascade"]["flipped"] == 1.0 and v["cascade"]["via_verifier"] == 1.0
    assert v["cascade_routing"] == {"tier1_prompts": 3, "flipped": 1.0, "via_direct": 0.0, "via_verifier": 1.0}
    assert v["mean_verifier_delta"] == pytest.approx(0.5)
    n = by[("nothing", "prefix")]
    assert n["route"]["flipped"] == n["cascade"]["flipped"] == n["cascade_routing"]["flipped"] == 0.0


def test_the_gadget_goes_into_the_request_and_the_answer_is_kept(monkeypatch):
    seen = []

    def spy(prompts, answers):
        seen.append((prompts, answers))
        return judge(prompts, answers)

    monkeypatch.setattr(rg, "GADGETS", {"g": "GADGET"})
    rg.pair_modes(spy, ROWS)
    answers = [r[2] for r in ROWS]
    assert all(a == answers for _, a in seen)
    assert seen[1][0][0] == "GADGET\n\neasy one" and seen[2][0][0] == "easy one\n\nGADGET"


def test_pair_rows_sample_each_llama_file_evenly_and_keep_empty_answers_as_text():
    try:
        rows = rg.pair_rows(8, seed=0)
    except SystemExit:
        pytest.skip("../shared/data is not here")
    assert [r[0] for r in rows] == ["mmlu_pro"] * 2 + ["gsm8k"] * 2 + ["math_l5"] * 2 + ["crux"] * 2
    assert all(isinstance(p, str) and p and isinstance(a, str) for _, p, a in rows)
    assert rows == rg.pair_rows(8, seed=0) and rows != rg.pair_rows(8, seed=1)
