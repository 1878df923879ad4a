"""The verifier: answer features, its artifact, the verdict, its fit, and `tierroute verify` end to end."""

import json
import random

import numpy as np
import pytest

from app.calibration.answers import AnswerRow, load_answer_file
from app.calibration.verifier_build import build_verifier, designs, nested_report
from app.calibration.verifier_fit import candidates
from app.cli import main
from app.routing.artifact import ArtifactError
from app.verification.artifact import DEFAULT_VERIFIER, Logit, VerifierArtifact, VerifierExpert, load_verifier
from app.verification.features import final_answer, logprob_features, text_features
from app.verification.rows import RowError, answer_of
from app.verification.verifier import Answer, Verifier

PAIR = ("small-model", "large-model")


def test_final_answer_reads_json_boxed_and_stated_answers():
    assert final_answer('{"reasoning": "2+2", "answer": "4"}') == "4"
    assert final_answer('```json\n{"reasoning": "x", "answer": "[1, 2]"}\n```') == "[1, 2]"
    assert final_answer(r"so it is \boxed{\frac{1}{2}} indeed") == r"\frac{1}{2}"
    assert final_answer("Thus the answer is (H).") == "(H)"
    assert final_answer("I am not sure.") is None


def test_text_features_catch_wrong_arithmetic_hedging_and_a_missing_answer():
    good = text_features("q", '{"reasoning": "3 * 4 = 12, then 12 + 1 = 13", "answer": "13"}')
    bad = text_features("q", "3 * 4 = 13, approximately; however I am not sure")
    assert good["arith_claims"] == pytest.approx(np.log1p(2)) and (good["arith_wrong"], good["final_matches_last_number"]) == (0.0, 1.0)
    assert bad["arith_wrong"] == 1.0 and bad["hedges"] > 0 and bad["has_final"] == 0.0


def test_logprob_features_take_low_quantiles_and_the_final_answers_span():
    lp = [-0.01] * 18 + [-3.0, -2.0]
    tokens = ["x"] * 16 + [" answer", " is", " 4", "2"]
    f = logprob_features(lp, tokens)
    assert f["lp_min"] == -3.0 and f["lp_q05"] < -1.9 and f["lp_median"] == pytest.approx(-0.01)
    assert f["lp_final_mean"] == pytest.approx(np.mean(lp[17:]))  # the tokens after "answer"
    assert logprob_features([]) is None


def _expert(coef, features, form="needs_strong", strong=None):
    n = len(coef)
    logit = Logit(coef=coef, intercept=0.0, mean=[0.0] * n, scale=[1.0] * n)
    return VerifierExpert(candidate="t", features=features, form=form, model=logit, strong=strong)


def test_a_product_expert_multiplies_tier1_wrong_by_tier2_right():
    s = Logit(coef=[0.0], intercept=np.log(0.25 / 0.75), mean=[0.0], scale=[1.0])
    art = VerifierArtifact(pair={"tier1": "a", "tier2": "b"}, experts={"k": _expert([0.0], ["hedges"], "product", s)}, threshold=0.1)
    v = Verifier(art).verify([Answer("q", "fine")], None)[0]
    assert v.score == pytest.approx(0.5 * 0.25) and v.escalate and v.kind == "k"


def test_an_answer_without_logprobs_reads_the_training_mean_for_them():
    e = _expert([1.0, 5.0], ["hedges", "lp_min"])
    e.model.mean[1] = -2.0
    art = VerifierArtifact(pair={"tier1": "a", "tier2": "b"}, experts={"k": e}, threshold=0.5)
    without = Verifier(art).verify([Answer("q", "ok")], None)[0].score
    confident = Verifier(art).verify([Answer("q", "ok", [-0.01, -0.02])], None)[0].score
    assert without == pytest.approx(0.5) and confident > 0.99


def test_invalid_verifiers_fail_naming_the_field(tmp_path):
    with pytest.raises(ArtifactError, match="no such verifier"):
        load_verifier(tmp_path / "missing.json")
    p = tmp_path / "v.json"
    p.write_text(json.dumps({"format": "tierroute.artifact"}))
    with pytest.raises(ArtifactError, match="not a tierroute verifier"):
        load_verifier(p)
    raw = json.loads(DEFAULT_VERIFIER.read_text())
    raw["threshold"] = 2
    p.write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="threshold"):
        load_verifier(p)


def test_rows_name_the_line_and_never_echo_content():
    with pytest.raises(RowError, match="x.jsonl:3: needs 'answer'") as e:
        answer_of({"prompt": "secret prompt"}, "x.jsonl:3")
    assert "secret" not in str(e.value)
    with pytest.raises(RowError, match="differ in length"):
        answer_of({"prompt": "p", "answer": "a", "answer_logprobs": [-1.0], "answer_tokens": ["a", "b"]}, "x")
    a = answer_of({"messages": [{"role": "user", "content": "hi"}], "answer": "yo", "answer_logprobs": "[-0.5]"}, "x")
    assert (a.request, a.answer, a.logprobs) == ("hi", "yo", [-0.5])


def synthetic_rows(n=240, seed=0):
    """Two kinds; in each, tier 1 hedges exactly when it is wrong, and tier 2 is right then."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        kind, wrong = ("mc", "code")[i % 2], rng.random() < 0.35
        request = f"Question {i}?\nA. one\nB. two" if kind == "mc" else f"[PYTHON]\ndef f(x):\n    return x\nassert f({i}) == ??\n[/PYTHON]"
        answer = ("Maybe, however I am not sure. The answer is (A)." if wrong else "The answer is (B).") if kind == "mc" else (
            '{"reasoning": "wait, perhaps", "answer": "?"}' if wrong else f'{{"reasoning": "returns x", "answer": "{i}"}}')
        rows.append(AnswerRow(Answer(request, answer), kind, 0.0 if wrong else 1.0, 1.0))
    return rows


def test_a_fitted_verifier_ranks_the_answers_tier1_gets_wrong_first():
    rows = synthetic_rows()
    art = build_verifier(rows, PAIR, escalation_share=0.35, progress=False)
    assert sorted(art.experts) == ["code", "mc"] and art.gate is not None and art.embedder is None
    scores = np.array([v.score for v in Verifier(art).verify([r.answer for r in rows], None)])
    wrong = np.array([r.needs_strong for r in rows]) == 1
    assert scores[wrong].min() > scores[~wrong].max()
    kinds = [v.kind for v in Verifier(art).verify([r.answer for r in rows], None)]
    assert kinds == [r.source for r in rows]


def test_nested_report_beats_random_on_learnable_rows():
    rows = synthetic_rows()
    report, oofs = nested_report(designs(rows, None, False), rows, candidates(False, False)[:4], 3, 2, 1, 0, False)
    for source in ("mc", "code"):
        r = report[source]
        assert r["verifier"] > 0.8 > r["random"] + 0.25 and len(oofs[source]) == r["n"]
        assert r["lift over request length"]["low"] > 0


def write_rows(path, rows, with_outcomes=True):
    with path.open("w") as f:
        for i, r in enumerate(rows):
            row = {"id": f"r{i}", "prompt": r.answer.request, "answer": r.answer.answer}
            if with_outcomes:
                row |= {"weak": r.weak, "strong": r.strong, "source": r.source}
            f.write(json.dumps(row) + "\n")
    return path


def test_calibrate_then_verify_then_show_end_to_end(tmp_path, capsys):
    rows = synthetic_rows()
    data = write_rows(tmp_path / "answers.jsonl", rows)
    assert len(load_answer_file(data)[0]) == len(rows)
    out = tmp_path / "verifier.json"
    code = main(["calibrate", "--data", str(data), "--verifier-only", "--verifier-output", str(out), "--pair", *PAIR, "--folds", "3", "--escalation-share", "0.35"])
    assert code == 0 and "nested cross-validation" in capsys.readouterr().out
    inp, res = write_rows(tmp_path / "in.jsonl", rows, with_outcomes=False), tmp_path / "scores.jsonl"
    assert main(["verify", "--input", str(inp), "--output", str(res), "--verifier", str(out), "--no-progress"]) == 0
    got = [json.loads(line) for line in res.read_text().splitlines()]
    assert [g["id"] for g in got] == [f"r{i}" for i in range(len(rows))]
    thr = load_verifier(out).threshold
    assert all(g["escalate"] == (g["score"] >= thr - 1e-6) for g in got)
    assert [g["escalate"] for g in got] == [bool(r.needs_strong) for r in rows]
    capsys.readouterr()
    assert main(["show", "--verifier", str(out)]) == 0
    assert "small-model -> large-model" in capsys.readouterr().out


def test_verify_fails_on_a_bad_row_and_writes_nothing(tmp_path, capsys):
    inp, res = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text(json.dumps({"id": 1, "prompt": "p", "answer": "a"}) + "\n" + json.dumps({"id": 2, "prompt": "secret"}) + "\n")
    assert main(["verify", "--input", str(inp), "--output", str(res), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{inp}:2: needs 'answer'" in err and "secret" not in err and not res.exists()
    assert main(["verify", "--input", str(inp), "--output", str(res), "--threshold", "1.5"]) == 2
    assert "--threshold" in capsys.readouterr().err


def topic_rows(n=200, seed=1):
    """One kind: tier 1 hedges exactly when it is wrong; where it is wrong, tier 2 is right only on topic X -- said
    by the request alone, in words its length and format features do not see."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        wrong, topic = rng.random() < 0.5, "X" if i % 2 else "Y"
        answer = "Maybe, however I am not sure. The answer is (A)." if wrong else "The answer is (B)."
        rows.append(AnswerRow(Answer(f"Question {i:03d} on topic {topic}?\nA. one\nB. two", answer), "mc", 0.0 if wrong else 1.0, float(topic == "X" or not wrong)))
    return rows


def topic_embed(texts):
    return np.array([[1.0, 0.0] if "topic X" in t else [0.0, 1.0] for t in texts])


def test_tier2s_model_may_read_the_requests_embedding(monkeypatch):
    from app.calibration import verifier_fit
    from app.routing.artifact import EmbedderInfo

    rows, info = topic_rows(), EmbedderInfo(model_id="test/topic", dim=2)
    small = build_verifier(rows, PAIR, topic_embed, info, escalation_share=0.25, progress=False, with_embedding=True)
    assert small.embedder is None and not small.experts["mc"].embeds  # 200 rows: too few to try embeddings
    monkeypatch.setattr(verifier_fit, "MIN_EMBEDDING_ROWS", 100)
    art = build_verifier(rows, PAIR, topic_embed, info, escalation_share=0.25, progress=False, with_embedding=True)
    e = art.experts["mc"]
    assert (e.form, e.strong_input, art.embedder.model_id) == ("product", "request", "test/topic") and "x request embedding" in e.candidate
    v = Verifier(art)
    assert v.texts(rows[1].answer) == [rows[1].answer.request]  # the request, as the router embeds it
    scores = np.array([x.score for x in v.verify([r.answer for r in rows], topic_embed)])
    needs = np.array([r.needs_strong for r in rows]) == 1
    assert scores[needs].min() > scores[~needs].max()  # wrong on topic X first: tier 2 fails topic Y anyway
    with pytest.raises(ValueError, match="this verifier embeds texts"):
        v.verify([rows[0].answer], None)


def test_a_request_reading_strong_model_is_validated():
    from app.routing.artifact import EmbedderInfo

    strong = Logit(coef=[1.0, 0.0], intercept=0.0, mean=[0.0, 0.0], scale=[1.0, 1.0])
    base = dict(candidate="t", features=["hedges"], model=Logit(coef=[1.0], intercept=0.0, mean=[0.0], scale=[1.0]))
    with pytest.raises(ValueError, match="strong_input: 'request' needs form 'product'"):
        VerifierExpert(**base, strong_input="request")
    e = VerifierExpert(**base, form="product", strong=strong, strong_input="request")
    with pytest.raises(ValueError, match="must name its embedder"):
        VerifierArtifact(pair={"tier1": "a", "tier2": "b"}, experts={"k": e}, threshold=0.5)
    with pytest.raises(ValueError, match="experts.k.strong: 2 coefficients for the request's 3-dimensional"):
        VerifierArtifact(pair={"tier1": "a", "tier2": "b"}, experts={"k": e}, threshold=0.5, embedder=EmbedderInfo(model_id="m", dim=3))
