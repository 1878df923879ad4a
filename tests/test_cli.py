"""The tierroute CLI end to end, with the real embedding model and the shipped artifact."""

import json
import re

import pytest

from app.cli import main
from app.routing.artifact import DEFAULT_ARTIFACT, load_artifact
from app.routing.router import Router

pytestmark = pytest.mark.slow


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    listed = re.findall(r"^ {4}(\w+)", out, re.M)  # argparse's sub-command table, not the description
    assert listed == ["calibrate", "evaluate", "score", "label", "route", "demo", "show", "verify", "loadtest", "plan"], out


def test_score_adds_score_and_tier_in_input_order(tmp_path, capsys):
    inp = write_lines(
        tmp_path / "in.jsonl",
        [
            json.dumps({"id": 1, "prompt": "What is the capital of France?"}),
            json.dumps({"id": 2, "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Prove that there are infinitely many primes."}]}),
            "",
            json.dumps({"id": 3, "prompt": "Reset my password please", "user": "u9"}),
        ],
    )
    out = tmp_path / "out.jsonl"
    code, _, err = run(capsys, "score", "--input", str(inp), "--output", str(out))
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert rows[2]["user"] == "u9" and rows[1]["messages"][0]["content"] == "be brief"
    thr = load_artifact().threshold
    router = Router.load()  # each row's score is the router's for its prompt (or messages), in input order
    for r, request in zip(rows, ["What is the capital of France?", rows[1]["messages"], "Reset my password please"]):
        assert r["score"] == pytest.approx(router.route(request).complexity_score, abs=1e-6)
        assert r["tier"] == (2 if r["score"] >= thr else 1)


@pytest.mark.parametrize(
    "bad,msg",
    [
        ("{not json", "line 2: invalid JSON"),
        (json.dumps({"text": "hi"}), "line 2: needs a 'prompt'"),
        (json.dumps({"prompt": 42}), "line 2: 'prompt' must be a string"),
        (json.dumps({"messages": [{"role": "assistant", "content": "x"}]}), "line 2: messages: needs at least one"),
        (json.dumps({"messages": "hello"}), "line 2: invalid 'messages'"),
        ("[1]", "line 2: expected a JSON object"),
    ],
)
def test_score_bad_line_is_named_and_nothing_is_written(tmp_path, capsys, bad, msg):
    inp = write_lines(tmp_path / "in.jsonl", [json.dumps({"prompt": "ok"}), bad, json.dumps({"prompt": "ok too"})])
    out = tmp_path / "out.jsonl"
    out.write_text("previous contents\n")
    code, _, err = run(capsys, "score", "--input", str(inp), "--output", str(out))
    assert code == 2
    assert msg in err and "nothing was written" in err
    assert out.read_text() == "previous contents\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]  # no temporary file left


def test_score_skip_invalid_reports_and_skips(tmp_path, capsys):
    inp = write_lines(tmp_path / "in.jsonl", [json.dumps({"prompt": "a"}), "oops", json.dumps({"prompt": "b"})])
    out = tmp_path / "out.jsonl"
    code, _, err = run(capsys, "score", "--input", str(inp), "--output", str(out), "--skip-invalid")
    assert code == 0
    assert "skipped line 2: invalid JSON" in err
    assert [json.loads(x)["prompt"] for x in out.read_text().splitlines()] == ["a", "b"]


def test_score_missing_input_and_bad_artifact(tmp_path, capsys):
    code, _, err = run(capsys, "score", "--input", str(tmp_path / "none.jsonl"), "--output", str(tmp_path / "o.jsonl"))
    assert code == 2 and "no such file" in err
    inp = write_lines(tmp_path / "in.jsonl", [json.dumps({"prompt": "a"})])
    bad = tmp_path / "art.json"
    bad.write_text('{"format": "something else"}')
    code, _, err = run(capsys, "score", "--input", str(inp), "--output", str(tmp_path / "o.jsonl"), "--artifact", str(bad))
    assert code == 2 and "not a tierroute artifact" in err
    assert not (tmp_path / "o.jsonl").exists()


def test_calibrate_rejects_bad_targets_and_data(tmp_path, capsys):
    data = write_lines(tmp_path / "d.jsonl", [json.dumps({"prompt": "a", "label": "simple"})])
    code, _, err = run(capsys, "calibrate", "--data", str(data), "--tier2-share", "1.5", "--output", str(tmp_path / "a.json"))
    assert code == 2 and "--tier2-share must be between 0 and 1" in err
    code, _, err = run(capsys, "calibrate", "--data", str(data), "--repeats", "0", "--output", str(tmp_path / "a.json"))
    assert code == 2 and "--repeats must be at least 1" in err
    code, _, err = run(capsys, "calibrate", "--data", str(data), "--min-source-share", "1.2", "--output", str(tmp_path / "a.json"))
    assert code == 2 and "--min-source-share must be in [0, 1)" in err
    code, _, err = run(capsys, "calibrate", "--data", str(data), "--min-source-share", "0.1", "--traffic", str(data), "--output", str(tmp_path / "a.json"))
    assert code == 2 and "--min-source-share sets a floor on the calibration mix" in err
    bad = write_lines(tmp_path / "bad.jsonl", [json.dumps({"prompt": "a"})])
    code, _, err = run(capsys, "calibrate", "--data", str(bad), "--output", str(tmp_path / "a.json"))
    assert code == 2 and f"{bad}:1" in err
    assert not (tmp_path / "a.json").exists()


def toy_outcomes(path, n, every):
    """Every ``every``-th prompt is a proof the weak model gets wrong; the rest are sums it gets right."""
    rows = []
    for i in range(n):
        hard = i % every == 0
        prompt = f"Prove that the sum of the first {i + 2} odd numbers is a perfect square, by induction." if hard else f"What is {i} plus one?"
        rows.append(json.dumps({"prompt": prompt, "weak": not hard, "strong": True}))
    return write_lines(path, rows)


def test_evaluate_reports_baselines_and_writes_png(tmp_path, capsys):
    data = toy_outcomes(tmp_path / "toy.jsonl", 40, 4)
    code, out, err = run(capsys, "evaluate", "--data", str(data), "--plot-dir", str(tmp_path / "plots"), "--json", str(tmp_path / "r.json"))
    assert code == 0, err
    assert "prompt length" in out and "random" in out and "APGR" in out
    png = tmp_path / "plots" / "toy.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((tmp_path / "r.json").read_text())["toy"]
    assert report["router"]["apgr"] > report["random (mean of 20)"]["apgr"]
    prompts = [json.loads(line)["prompt"] for line in data.read_text().splitlines() if line.strip()]
    router = Router.load()  # the share of the toy prompts the router sends to tier 2 at the artifact's threshold
    at = report["at_threshold"]
    assert at["threshold"] == router.threshold
    assert at["tier2_share"] == pytest.approx(sum(router.route(t).tier == 2 for t in prompts) / len(prompts))
    lift = report["lift over length"]
    assert lift["low"] <= lift["lift"] <= lift["high"] and "lift over prompt length" in out


def test_route_prints_a_full_decision(capsys):
    code, out, _ = run(capsys, "route", "Design a multi-region, strongly consistent ledger service and justify the trade-offs.")
    assert code == 0
    d = json.loads(out)
    want = Router.load().route("Design a multi-region, strongly consistent ledger service and justify the trade-offs.")
    assert d["tier"] == want.tier and d["scorer"] == want.scorer and d["kind"] == want.kind
    assert d["complexity_score"] == pytest.approx(want.complexity_score, abs=1e-9) and d["confidence"] == pytest.approx(want.confidence, abs=1e-9)
    assert d["threshold"] == pytest.approx(load_artifact().threshold)
    assert d["router_latency_ms"] > 0 and {"embedding", "centroid"} <= set(d["signals"])


def test_show_prints_the_shipped_artifacts_card_with_verdicts_from_its_own_figures(capsys):
    from app.calibration.card import BEATS, LOSES, TIES

    art = load_artifact()
    code, out, _ = run(capsys, "show", "--json")
    assert code == 0
    c = json.loads(out)
    assert c["threshold"] == pytest.approx(art.threshold)
    assert {k: v["expert"] for k, v in c["kinds"].items()} == art.build["chosen"]
    by_source = art.build["nested_cross_validation"]["by_source"]
    assert set(c["quality"]) == set(by_source)
    for source, q in c["quality"].items():
        lift = by_source[source].get("lift over length")
        if lift:
            expected = BEATS if lift["low"] > 0 else LOSES if lift["high"] < 0 else TIES
            assert q["verdict"] == expected, source
    code, out, _ = run(capsys, "show")
    assert code == 0 and f"threshold {art.threshold:.4f}" in out and "nested cross-validation" in out
    code, _, err = run(capsys, "show", "--artifact", "no-such.json")
    assert code == 2 and "no such artifact" in err


def test_default_artifact_matches_packaged_embedder():
    art = load_artifact(DEFAULT_ARTIFACT)
    assert art.embedder.model_id == "sentence-transformers/all-MiniLM-L6-v2" and art.embedder.dim == 384


def test_default_operating_point_starves_no_kind_with_outcomes():
    """The issue's bounds: MMLU-style and GSM8K-style traffic each get 5-40% tier 2 at the default threshold."""
    art = load_artifact(DEFAULT_ARTIFACT)
    shares = art.operating_point["tier2_share_by_source"]
    for source in ("mmlu", "gsm8k", "gsm8k:gpt3-6b-vs-175b"):
        assert 0.05 <= shares[source] <= 0.40, (source, shares[source])
    assert art.operating_point["target"]["min_source_share"] >= 0.05


def test_shipped_router_ranks_clear_cases_and_handles_messages():
    from app.routing.router import Router

    router = Router.load()
    simple = router.route("What is the capital of France?")
    hard = router.route("Prove that every bounded monotone sequence of real numbers converges.")
    assert simple.tier == 1 and hard.complexity_score > simple.complexity_score
    chat = router.route(
        [
            {"role": "system", "content": "You are a support bot."},
            {"role": "user", "content": "Prove that every bounded monotone sequence of real numbers converges."},
        ]
    )
    assert chat.complexity_score == pytest.approx(hard.complexity_score, abs=1e-5)


def test_shipped_router_beats_length_on_held_out_chat_probe(capsys, tmp_path):
    """tests/data/chat_probe.jsonl: hand-written chat prompts never used in calibration.

    Math, reasoning and coding prompts count as needing tier 2 (weak wrong,
    strong right), writing, roleplay, extraction, humanities and STEM
    explanations as not; the router must rank them better than prompt length.
    """
    from conftest import ROOT

    rows = [json.loads(line) for line in (ROOT / "tests/data/chat_probe.jsonl").read_text().splitlines()]
    data = write_lines(
        tmp_path / "probe.jsonl",
        [json.dumps({"prompt": r["prompt"], "weak": r["label"] == "simple", "strong": True}) for r in rows],
    )
    code, _, err = run(capsys, "evaluate", "--data", str(data), "--plot-dir", str(tmp_path), "--json", str(tmp_path / "r.json"))
    assert code == 0, err
    r = json.loads((tmp_path / "r.json").read_text())["probe"]
    assert r["router"]["apgr"] > r["prompt length"]["apgr"] + 0.05
    assert r["router"]["apgr"] > 0.65


def test_calibrate_sets_threshold_on_own_traffic_and_score_reports_the_split(tmp_path, capsys):
    """--traffic: the threshold comes from the user's unlabelled prompts, not the calibration mix."""
    data = toy_outcomes(tmp_path / "toy.jsonl", 60, 3)
    traffic = write_lines(
        tmp_path / "traffic.jsonl",
        [json.dumps({"prompt": f"What is the colour of item {i}?"}) for i in range(70)]
        + [json.dumps({"messages": [{"role": "user", "content": f"Prove lemma {i} by induction on n."}]}) for i in range(30)],
    )
    out_path = tmp_path / "a.json"
    code, out, err = run(
        capsys, "calibrate", "--data", str(data), "--traffic", str(traffic), "--tier2-share", "0.2", "--folds", "3", "--output", str(out_path)
    )
    assert code == 0, err
    art = load_artifact(out_path)
    assert art.operating_point["traffic"].startswith(str(traffic)) and art.operating_point["prompts"] == 100
    assert "nested cross-validation" in out and "lift over length" in out
    code, _, err = run(capsys, "score", "--input", str(traffic), "--output", str(tmp_path / "o.jsonl"), "--artifact", str(out_path))
    assert code == 0, err
    tiers = [json.loads(line)["tier"] for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    share = tiers.count(2) / len(tiers)
    assert share == pytest.approx(0.2, abs=0.02)
    assert f"tier 2 {tiers.count(2)} ({100 * share:.1f}%)" in err
    # --traffic goes with a tier-2 share, not with --recover
    code, _, err = run(capsys, "calibrate", "--data", str(data), "--traffic", str(traffic), "--recover", "0.8", "--output", str(out_path))
    assert code == 2 and "--traffic" in err
