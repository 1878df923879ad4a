"""The ladder of tiers, offline: the join of pair files, thresholds, cost accounting, the artifact, and
`evaluate --ladder` / `calibrate --ladder` end to end on small files (no embedder, no Ray)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from app.calibration.data import DataError
from app.calibration.ladder_artifact import load_ladder_artifact
from app.calibration.ladder_data import load_ladder_file, load_shared_ladder, write_jsonl
from app.calibration.ladder_policy import (
    evaluate_grid,
    final_tier,
    grid,
    outcome,
    paid,
    shares,
    thresholds_for_budget,
    thresholds_for_quality,
    thresholds_for_shares,
)
from app.calibration.ladder_prices import Price, parse_prices, row_costs
from app.cli import main
from app.routing.artifact import ArtifactError


def _write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_join_matches_ids_and_reports_missing(tmp_path):
    head = ["prompt", "id", "weak", "strong", "weak_answer", "strong_answer"]
    _write_csv(tmp_path / "zeroeval/gsm8k_llama31_8b_vs_70b.csv", head,
               [["Q one?", "a", 0, 1, "8b-a", "70b-a"], ["Q two?", "b", 1, 1, "8b-b", "70b-b"], ["Q three?", "c", 0, 0, "8b-c", "70b-c"]])  # fmt: skip
    # another order, and id "c" missing: joined on the id, not the line
    _write_csv(tmp_path / "zeroeval/gsm8k_gpt4omini_vs_gpt4o.csv", head,
               [["Q two?", "b", 0, 1, "mini-b", "4o-b"], ["Q one, reworded?", "a", 1, 0, "mini-a", "4o-a"]])  # fmt: skip
    d = load_shared_ladder(tmp_path, "gsm8k")
    assert sorted(d.models) == ["gpt-4o", "gpt-4o-mini", "llama-3.1-70b", "llama-3.1-8b"]
    by_id = {r.id: r for r in d.rows}
    assert set(by_id) == {"a", "b"}
    assert by_id["a"].scores == {"llama-3.1-8b": 0.0, "llama-3.1-70b": 1.0, "gpt-4o-mini": 1.0, "gpt-4o": 0.0}
    assert by_id["b"].answers["gpt-4o-mini"] == "mini-b" and by_id["b"].answers["llama-3.1-8b"] == "8b-b"
    assert by_id["a"].prompt == "Q one?" and by_id["a"].source == "gsm8k"  # the first file's text
    assert d.prompt_mismatch == 1
    missing = {k.rsplit("/", 1)[-1]: v for k, v in d.dropped.items()}
    assert missing == {"gsm8k_llama31_8b_vs_70b.csv": [], "gsm8k_gpt4omini_vs_gpt4o.csv": ["c"]}
    assert "1 ids missing" in d.summary()
    with pytest.raises(DataError, match="qwen2-7b"):
        load_shared_ladder(tmp_path, "gsm8k", ["llama-3.1-8b", "qwen2-7b"])


def test_ladder_files_round_trip_and_bad_input_names_line_and_field(tmp_path):
    p = tmp_path / "l.csv"
    _write_csv(p, ["prompt", "small", "mid", "big", "small_answer"], [["x?", 0, 1, 1, "ans"], ["y?", 1, 1, 0, ""]])
    d = load_ladder_file(p, ["small", "mid", "big"])
    assert d.models == ["small", "mid", "big"] and d.rows[0].scores == {"small": 0.0, "mid": 1.0, "big": 1.0}
    assert d.rows[0].answers == {"small": "ans"} and d.rows[1].answers == {}
    j = tmp_path / "l.jsonl"
    write_jsonl(d, j)
    assert [r.scores for r in load_ladder_file(j).rows] == [r.scores for r in d.rows]
    with pytest.raises(DataError, match=r"l\.csv:2: missing score column 'huge'"):
        load_ladder_file(p, ["small", "huge"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "scores": {"s": 1, "b": 0}}\n{"prompt": "b", "scores": {"s": 1}}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: 'scores' lacks model\(s\) \['b'\]"):
        load_ladder_file(bad)
    bad.write_text('{"prompt": "a", "scores": {"s": 1, "b": "maybe"}}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:1: scores\.b: cannot read outcome"):
        load_ladder_file(bad)
    bad.write_text('{"scores": {"s": 1, "b": 0}}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:1: needs a non-empty 'prompt'"):
        load_ladder_file(bad)


def test_cascade_charges_every_visited_tier_and_route_only_the_last():
    costs = np.array([[1.0, 10.0, 100.0]] * 3)
    scores = np.array([[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]])  # P(tier k not enough) at boundaries 0 and 1
    tiers = final_tier(scores, [0.5, 0.5])
    assert tiers.tolist() == [0, 1, 2]
    assert paid(costs, tiers, "cascade").tolist() == [1.0, 11.0, 111.0]
    assert paid(costs, tiers, "route").tolist() == [1.0, 10.0, 100.0]
    outcomes = np.array([[0, 1, 1], [0, 1, 1], [1, 0, 1]], dtype=float)
    assert outcome(outcomes, tiers).tolist() == [0.0, 1.0, 1.0]
    rel, q = evaluate_grid(scores, outcomes, costs, "cascade", np.array([[0.5, 0.5], [-np.inf, -np.inf]]))
    assert rel.tolist() == pytest.approx([123 / 300, 333 / 300]) and q.tolist() == pytest.approx([2 / 3, 1.0])
    # a two-tier sub-ladder's budget is relative to the full ladder's top tier, not to its own top
    rel, _ = evaluate_grid(scores[:, :1], outcomes[:, :2], costs[:, :2], "cascade", np.array([[0.5]]), ref=costs[:, 2])
    assert rel.tolist() == pytest.approx([(1 + 11 + 11) / 300])


def test_token_costs_from_prices_and_answers():
    from app.calibration.ladder_data import LadderRow

    rows = [LadderRow("1", "x" * 40, {"a": 1, "b": 1}, {"a": "y" * 400})]  # 11 prompt tokens; a: 101 answer tokens
    c = row_costs(rows, ["a", "b"], {"a": Price(input=1, output=2), "b": Price(input=10, output=20)}, default_output_tokens=50)
    assert c[0].tolist() == pytest.approx([(11 * 1 + 101 * 2) / 1e6, (11 * 10 + 50 * 20) / 1e6])
    assert parse_prices("gpt-4o=5/15")["gpt-4o"] == Price(input=5, output=15)
    with pytest.raises(ValueError, match="--prices: 'gpt-4o=5' is not model=INPUT/OUTPUT"):
        parse_prices("gpt-4o=5")
    with pytest.raises(ValueError, match=r"no price for \['b'\]"):
        row_costs(rows, ["a", "b"], {"a": Price(input=1, output=1)})


def test_thresholds_hit_tier_shares_and_quality_targets():
    rng = np.random.default_rng(0)
    s = rng.random((2000, 2))
    t = thresholds_for_shares(s, [0.6, 0.3, 0.1])
    assert shares(final_tier(s, t), 3) == pytest.approx([0.6, 0.3, 0.1], abs=0.002)
    assert shares(final_tier(s, thresholds_for_shares(s, [0.0, 0.0, 1.0])), 3).tolist() == [0, 0, 1]
    assert shares(final_tier(s, thresholds_for_shares(s, [1.0, 0.0, 0.0])), 3).tolist() == [1, 0, 0]
    with pytest.raises(ValueError, match="summing to 1"):
        thresholds_for_shares(s, [0.5, 0.2, 0.2])
    # a quality target: scores that know which rows tier 0 fails; the cheapest thresholds reaching it
    fails = rng.random(2000) < 0.3
    outcomes = np.stack([(~fails).astype(float), np.ones(2000), np.ones(2000)], axis=1)
    sc = np.stack([fails.astype(float) * 0.8 + 0.1, np.full(2000, 0.9)], axis=1)
    costs = np.tile([1.0, 5.0, 50.0], (2000, 1))
    tq = thresholds_for_quality(sc, outcomes, costs, "route", 1.0)
    f = final_tier(sc, tq)
    assert outcome(outcomes, f).mean() == 1.0 and (f <= 1).all()  # never the expensive top tier
    tb = thresholds_for_budget(sc, outcomes, costs, "route", 0.001)
    assert (final_tier(sc, tb) == 0).all()  # the cheapest combo when nothing fits the budget
    assert len(grid(sc)) > 4


def _toy_ladder(path, n=120, seed=0):
    """A three-model ladder where a wrong answer of the small models mostly says so ("not sure")."""
    rng = np.random.default_rng(seed)
    with path.open("w") as f:
        for i in range(n):
            hard = rng.random()
            sc = {"small": float(hard < 0.5), "mid": float(hard < 0.8), "big": float(hard < 0.95)}
            unsure = {m: rng.random() < (0.1 if sc[m] else 0.85) for m in ("small", "mid")}
            ans = {m: (f"I am not sure, maybe {i} or {i + 1}, however wait." if unsure[m] else f"The answer is {i}.") for m in ("small", "mid")}
            f.write(json.dumps({"id": str(i), "prompt": f"Question {i}: " + "word " * int(5 + 40 * hard), "scores": sc, "answers": ans}) + "\n")
    return path


PRICES = "small=0.1/0.1,mid=1/1,big=10/10"


def test_evaluate_ladder_writes_png_and_report(tmp_path, capsys):
    data = _toy_ladder(tmp_path / "toy.jsonl")
    out = tmp_path / "report.json"
    rc = main(["evaluate", "--ladder", "small,mid,big", "--data", str(data), "--prices", PRICES, "--variants", "verifier,length,random",
               "--folds", "3", "--bootstrap", "30", "--plot-dir", str(tmp_path / "plots"), "--json", str(out)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "cascade: verifier: small > mid > big" in text and "ladder - best two-tier" in text
    png = tmp_path / "plots/ladder-toy-small-mid-big.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rep = json.loads(out.read_text())["sources"]["toy"]
    assert rep["n"] == 120 and set(rep["by_variant"]) == {"cascade: verifier", "route: prompt length", "route: random"}
    casc = rep["by_variant"]["cascade: verifier"]["targets"]["0.95"]["curves"]
    # the verifier reads the answers' hedges: its ladder reaches 95% of the top tier for less than the top tier alone
    assert casc["cascade: verifier: small > mid > big"]["cost"] < 0.5
    assert casc["fixed: big"]["cost"] == pytest.approx(1.0)
    assert len(rep["curves"]["cascade: verifier: small > mid"]["cost"]) == len(rep["budgets"])


def test_calibrate_ladder_writes_a_valid_artifact(tmp_path, capsys):
    data = _toy_ladder(tmp_path / "toy.jsonl")
    out = tmp_path / "ladder.json"
    rc = main(["calibrate", "--ladder", "small,mid,big", "--data", str(data), "--prices", PRICES, "--tier-shares", "0.5,0.3,0.2",
               "--folds", "3", "--output", str(out)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    art = load_ladder_artifact(out)
    assert [t.model for t in art.tiers] == ["small", "mid", "big"] and art.mode == "cascade"
    assert [b.above for b in art.boundaries] == [["mid", "big"], ["big"]]
    assert art.card["on_calibration_rows"]["tier_shares"] == pytest.approx([0.5, 0.3, 0.2], abs=0.02)
    assert art.tiers[2].price == Price(input=10, output=10)
    # a tampered artifact fails naming the field
    raw = json.loads(out.read_text())
    raw["boundaries"][1]["above"] = ["mid"]
    out.write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="boundaries"):
        load_ladder_artifact(out)
    rc = main(["calibrate", "--ladder", "small,mid,big", "--data", str(data), "--tier-shares", "0.5,0.5", "--output", str(out)])
    assert rc == 2 and "--tier-shares: 3 non-negative shares" in capsys.readouterr().err


def test_cli_bad_input_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "scores": {"small": 1, "mid": 1, "big": 1}}\n{"prompt": "b", "scores": {"small": 1}}\n')
    rc = main(["evaluate", "--ladder", "small,mid,big", "--data", str(bad), "--plot-dir", str(tmp_path)])
    assert rc == 2 and "bad.jsonl:2: 'scores' lacks model(s) ['mid', 'big']" in capsys.readouterr().err
    rc = main(["evaluate", "--ladder", "small", "--data", str(bad), "--plot-dir", str(tmp_path)])
    assert rc == 2 and "--ladder needs at least two models" in capsys.readouterr().err
    csvp = tmp_path / "l.csv"
    _write_csv(csvp, ["prompt", "small", "mid"], [["x?", 1, "yes-ish"]])
    rc = main(["evaluate", "--ladder", "small,mid", "--data", str(csvp), "--plot-dir", str(tmp_path)])
    assert rc == 2 and "l.csv:2: mid: cannot read outcome 'yes-ish'" in capsys.readouterr().err
