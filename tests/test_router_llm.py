"""The router-LLM hybrid fitted on outcomes (``calibrate --router-llm``) and the ratings client.

Fake embedder and a stand-in endpoint (httpx.MockTransport): unit-test doubles. The real engine
is rated in tests/test_serve_shadow.py.
"""

import asyncio
import json
import math

import httpx
import numpy as np
import pytest

from app.calibration.build import build_artifact
from app.calibration.data import Dataset, Example
from app.calibration.fit import fit_router
from app.calibration.nested import nested_cv
from app.calibration.prepared import prepare
from app.calibration.router_llm import blend, fit_router_llm, sample_rows
from app.feedback.ratings import RatingCache, rate_texts
from app.routing.router import Router
from app.routing.scorers import RATING_CHOICES, rating_messages, rating_of_choice, rating_request


def outcomes(n=300, seed=0):
    """Which prompts need the large model is random w.r.t. their text: the embedding score cannot know."""
    rng = np.random.default_rng(seed)
    ex = [
        Example(text=f"request {i} " + "word " * int(rng.integers(1, 20)), source="own", weak=float(rng.random() > 0.4), strong=1.0)
        for i in range(n)
    ]
    return Dataset(ex, {"own": "0"})


@pytest.fixture(scope="module")
def setup():
    from conftest import FakeEmbedder

    fake = FakeEmbedder()
    p = prepare(outcomes(), fake, progress=False)
    fit = fit_router(p, np.arange(len(p.y)), n_splits=3)
    ev = nested_cv(p, 3, 2, plain=fit.choices, progress=False)
    art = build_artifact(p, fake, fit, ev, 0.3)
    return p, ev, art, fake


def fitted(setup, ratings):
    p, ev, art, _ = setup
    rows = sample_rows(p, None)
    s = ev.oof[rows]
    return fit_router_llm(p, rows, s, art.quantile_of(s), ratings[rows], float(art.quantile_of(art.threshold)), "judge-x", n_splits=3)


def test_informative_ratings_get_a_weight_and_beat_the_embedding_score_out_of_fold(setup):
    p, _, art, fake = setup
    rng = np.random.default_rng(1)
    informative = np.clip(0.3 + 0.4 * p.y + rng.normal(0, 0.1, len(p.y)), 0, 1)  # knows what the embedding cannot
    h = fitted(setup, informative)
    f = h.fit
    assert h.fitted and f["used"] and h.llm_weight > 0 and h.band > 0 and f["p_value"] <= 0.05
    assert f["gain"] > f["shuffled_ratings_gain"]["max"]
    assert f["apgr_with_llm_cv"]["own APGR"] > f["apgr_without_llm"]["own APGR"] + 0.05
    assert f["model"] == "judge-x" and f["rows"] == len(p.y)
    router = Router(art.model_copy(update={"hybrid": h}), fake)
    q_t = float(art.quantile_of(art.threshold))
    assert router.wants_llm(q_t)  # at the threshold: unsure, the LLM is asked


def test_ratings_that_add_nothing_get_weight_zero_and_are_never_asked(setup):
    p, _, art, fake = setup
    noise = np.random.default_rng(2).random(len(p.y))
    h = fitted(setup, noise)
    assert h.fitted and not h.fit["used"] and h.llm_weight == 0.0
    assert "added nothing" in h.fit["note"] and h.fit["p_value"] > 0.05
    router = Router(art.model_copy(update={"hybrid": h}), fake)
    assert not router.wants_llm(float(art.quantile_of(art.threshold)))
    # the default artifact says its hybrid was not fitted
    assert not art.hybrid.fitted and "not fitted" in art.hybrid.fit["note"]


def test_noise_of_any_draw_is_not_mistaken_for_signal(setup):
    """Choosing band and weight finds some gain in noise; the permutation test must not keep it."""
    p = setup[0]
    for seed in range(10, 15):
        h = fitted(setup, np.random.default_rng(seed).random(len(p.y)))
        assert h.llm_weight == 0.0, (seed, h.fit["gain"], h.fit["p_value"])


def test_blend_moves_only_scores_inside_the_band():
    s = np.array([0.1, 0.5, 0.9])
    q = np.array([0.1, 0.5, 0.9])
    r = np.array([1.0, 1.0, 1.0])
    out = blend(s, q, r, 0.5, 0.1, 0.5, 0.5)
    assert out.tolist() == [0.1, 0.75, 0.9]


def test_too_few_rated_rows_is_a_clear_error(setup):
    p, ev, art, _ = setup
    rows = np.arange(20)
    with pytest.raises(ValueError, match="too few"):
        fit_router_llm(p, rows, ev.oof[rows], ev.oof[rows], ev.oof[rows], 0.5, "m")


def test_sample_rows_takes_each_source_alike():
    ex = [Example(text=f"a {i}", source="a", weak=1.0, strong=1.0) for i in range(300)]
    ex += [Example(text=f"b {i}", source="b", weak=0.0, strong=1.0) for i in range(100)]
    ex += [Example(text=f"c {i}", source="ex", label=1) for i in range(50)]  # no outcomes: never rated
    from conftest import FakeEmbedder

    p = prepare(Dataset(ex, {"a": "0", "b": "0", "ex": "0"}), FakeEmbedder(), progress=False)
    rows = sample_rows(p, 100)
    assert sorted(set(p.src[rows])) == ["a", "b"]
    assert (p.src[rows] == "a").sum() == 75 and (p.src[rows] == "b").sum() == 25


# --- the ratings client ----------------------------------------------------------------


class Endpoint:
    """Stand-in for an OpenAI-compatible server answering rating requests with top log-probabilities."""

    def __init__(self, fail_on=()):
        self.bodies = []
        self.fail_on = fail_on

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        text = body["messages"][1]["content"]
        if any(f in text for f in self.fail_on):
            return httpx.Response(500, json={"error": {"message": "boom"}})
        top = [{"token": c, "logprob": (0.0 if c == "7" else -50.0)} for c in RATING_CHOICES]
        top[3]["logprob"] = 0.0  # "3" and "7" equally likely: expected rating 5
        choice = {"index": 0, "message": {"role": "assistant", "content": "7"}, "logprobs": {"content": [{"token": "7", "logprob": 0.0, "top_logprobs": top}]}}
        return httpx.Response(200, json={"choices": [choice]})


def test_ratings_use_the_serving_request_are_cached_and_failures_reported(tmp_path):
    ep = Endpoint(fail_on=("bad",))
    cache = RatingCache(tmp_path / "r.jsonl")
    texts = ["easy one", "hard one", "bad one"]
    out, rep = asyncio.run(rate_texts(texts, "m1", "http://x", cache, transport=httpx.MockTransport(ep)))
    assert out[0] == pytest.approx(0.5) and out[1] == pytest.approx(0.5) and out[2] is None
    assert (rep.rated, rep.failed, rep.cached) == (2, 1, 0) and "prompt 2" in rep.failures[0]
    assert ep.bodies[0] == rating_request("m1", texts[0])  # exactly what serving sends
    assert ep.bodies[0]["messages"] == rating_messages("easy one") and ep.bodies[0]["structured_outputs"]["choice"] == list(RATING_CHOICES)
    # a rerun (a new cache object from the same file) asks only for what failed
    ep2 = Endpoint()
    out2, rep2 = asyncio.run(rate_texts(texts, "m1", "http://x", RatingCache(tmp_path / "r.jsonl"), transport=httpx.MockTransport(ep2)))
    assert (rep2.cached, rep2.rated) == (2, 1) and len(ep2.bodies) == 1 and "bad one" in ep2.bodies[0]["messages"][1]["content"]
    # another model is another key
    assert RatingCache(tmp_path / "r.jsonl").get("m2", "easy one") is None


def test_rating_of_choice_falls_back_to_text_and_rejects_garbage():
    assert rating_of_choice({"message": {"content": "8"}}) == pytest.approx(0.8)
    assert rating_of_choice({"message": {"content": "x"}, "logprobs": {"content": [{"top_logprobs": [{"token": "2", "logprob": math.log(1.0)}]}]}}) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        rating_of_choice({"message": {"content": "no idea"}})


def test_cli_flags_go_together(tmp_path, capsys):
    from app.cli import main

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"p {i}", "weak": i % 2, "strong": 1}) + "\n" for i in range(40)))
    assert main(["calibrate", "--data", str(data), "--router-llm", "m", "--output", str(tmp_path / "a.json")]) == 2
    assert "--router-llm and --endpoint go together" in capsys.readouterr().err
    args = ["calibrate", "--data", str(data), "--router-llm", "m", "--endpoint", "http://x", "--router-llm-limit", "10", "--output", str(tmp_path / "a.json")]
    assert main(args) == 2 and "at least 50" in capsys.readouterr().err
    assert not (tmp_path / "a.json").exists()
