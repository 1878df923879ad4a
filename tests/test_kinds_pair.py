"""The gate's mixing rule, the model pair an artifact is for (and the serving warning), and the embedding cache."""

import json
import logging

import numpy as np
import pytest
import yaml

from app.calibration.build import model_pair
from app.calibration.card import card, format_card
from app.calibration.data import Dataset, Example
from app.calibration.prepared import cached_encode, prepare
from app.routing.artifact import DEFAULT_ARTIFACT, MIXTURE, TOP_KIND, Artifact, Expert, Gate, KindsParams, LengthParams, model_key
from app.routing.router import KindsScorer
from app.routing.scorers import CHARS, platt
from app.routing.text import feature_matrix
from conftest import ROOT, FakeEmbedder

LLAMA = ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-70B-Instruct")


def two_kinds(mixing: str) -> KindsParams:
    """Kinds a and b, each the length rule; b's calibration is high everywhere; the gate's P(b) grows with emb[:, 0]."""
    dim = 2 + feature_matrix(["x"]).shape[1]
    coef_b = [4.0] + [0.0] * (dim - 1)
    gate = Gate(kinds=["a", "b"], coef=[[0.0] * dim, coef_b], intercept=[0.0, 0.0], mean=[0.0] * dim, scale=[1.0] * dim)
    length = lambda platt: Expert(candidate="length", model=LengthParams(), platt=platt, outcomes=True)  # noqa: E731
    return KindsParams(gate=gate, experts={"a": length((0.5, -3.0)), "b": length((0.1, 3.0))}, mixing=mixing)


def test_top_kind_keeps_a_kinds_order_where_the_mixture_reorders_it():
    texts = ["short one", "a much longer prompt " * 8]
    emb = np.array([[-0.05, 0.0], [-1.0, 0.0]])  # both in kind a; the short one only just (P(b) ~ 0.45)
    feats = feature_matrix(texts)
    mixed, kind_m = KindsScorer(two_kinds(MIXTURE))(emb, feats)
    top, kind_t = KindsScorer(two_kinds(TOP_KIND))(emb, feats)
    assert list(kind_m) == list(kind_t) == [0, 0]
    assert top[0] < top[1]  # kind a's expert: the longer prompt is the riskier one
    assert mixed[0] > mixed[1]  # the mixture lets kind b's high calibration reorder them
    a, b = two_kinds(TOP_KIND).experts["a"].platt
    assert np.allclose(top, platt(feats[:, CHARS], a, b))  # exactly kind a's calibrated expert


def test_artifacts_without_the_mixing_field_read_as_the_mixture():
    raw = json.loads(DEFAULT_ARTIFACT.read_text())
    raw["scorer"].pop("mixing", None)
    assert Artifact.model_validate(raw).scorer.mixing == MIXTURE
    raw["scorer"]["mixing"] = "average"
    with pytest.raises(ValueError, match="mixing"):
        Artifact.model_validate(raw)


def test_model_key_matches_quantised_and_renamed_checkpoints_of_the_same_weights():
    assert model_key("hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4") == model_key(LLAMA[0]) == "llama318b"
    assert model_key("neuralmagic/Meta-Llama-3.1-70B-Instruct-FP8") == model_key(LLAMA[1])
    assert model_key(LLAMA[0]) not in model_key(LLAMA[1])
    assert model_key("models/tiny-chat-small") == "tinychatsmall"


def pair_artifact(pair: tuple[str, str] | None) -> Artifact:
    raw = json.loads(DEFAULT_ARTIFACT.read_text())
    raw["build"].pop("pair", None)
    if pair:
        raw["build"]["pair"] = {"tier1": pair[0], "tier2": pair[1]}
    return Artifact.model_validate(raw)


def app_config(name: str):
    from app.serve.config import AppConfig

    return AppConfig.model_validate(yaml.safe_load((ROOT / "configs" / name).read_text())["applications"][0]["args"])


def test_serving_warns_once_when_the_tiers_are_not_the_artifacts_pair(caplog, monkeypatch):
    from app.serve.graph import logger, warn_if_other_pair

    # Ray's logging setup may or may not stop propagation to the root: catch the records here, once either way
    monkeypatch.setattr(logger, "handlers", [caplog.handler])
    monkeypatch.setattr(logger, "propagate", False)

    art = pair_artifact(LLAMA)
    assert art.serves_pair("hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4", "neuralmagic/Meta-Llama-3.1-70B-Instruct-FP8")
    assert not art.serves_pair(LLAMA[1], LLAMA[0])  # swapped tiers are not the pair
    with caplog.at_level(logging.WARNING, logger="tierroute.config"):
        assert not warn_if_other_pair(app_config("g6e.yaml"), art)
        assert not caplog.records
        assert warn_if_other_pair(app_config("local.yaml"), art)
    (rec,) = caplog.records
    msg = rec.getMessage()
    assert "Llama-3.1-8B-Instruct" in msg and "tiny-chat" not in msg and "models/" not in msg  # no configured paths
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tierroute.config"):
        assert not warn_if_other_pair(app_config("local.yaml"), pair_artifact(None))  # an artifact naming no pair: nothing to say
    assert not caplog.records


def rows(source: str, n: int = 6) -> list[Example]:
    return [Example(text=f"prompt {i} of {source}", source=source, weak=float(i % 2), strong=1.0) for i in range(n)]


def test_the_artifact_records_the_one_model_pair_its_outcomes_name(tmp_path):
    fake = FakeEmbedder()
    both = Dataset(rows("mmlu") + rows("crux:llama31-8b-vs-70b") + rows("gsm8k:llama31-8b-vs-70b"))
    pair = model_pair(prepare(both, fake, progress=False))
    assert (pair["tier1"], pair["tier2"]) == LLAMA
    assert pair["sources"] == ["crux:llama31-8b-vs-70b", "gsm8k:llama31-8b-vs-70b"]
    assert model_pair(prepare(Dataset(rows("mmlu") + rows("gsm8k:gpt3-6b-vs-175b")), fake, progress=False)) is None
    c = card(pair_artifact(LLAMA))
    assert c["pair"] == {"tier1": LLAMA[0], "tier2": LLAMA[1]}
    assert f"calibrated for tier 1 {LLAMA[0]} / tier 2 {LLAMA[1]}" in format_card(c)
    assert "calibrated for" not in format_card(card(pair_artifact(None)))


class CountingEmbedder(FakeEmbedder):
    def __init__(self):
        self.seen: list[str] = []

    def encode(self, texts, progress=False):
        self.seen += texts
        return super().encode(texts, progress)


def test_cached_embeddings_are_reused_and_only_new_texts_are_embedded(tmp_path):
    e = CountingEmbedder()
    first = cached_encode(e, ["a", "b", "a"], tmp_path, progress=False)
    assert sorted(e.seen) == ["a", "b"]
    e.seen.clear()
    again = cached_encode(e, ["b", "c", "a"], tmp_path, progress=False)
    assert e.seen == ["c"]
    assert np.array_equal(again, FakeEmbedder().encode(["b", "c", "a"])) and np.array_equal(first[0], again[2])
    e.seen.clear()
    cached_encode(e, ["c"], None, progress=False)  # no cache: everything is embedded
    assert e.seen == ["c"]


def test_nested_cv_scores_the_same_fits_with_the_other_mixing_rule_and_the_artifact_records_both():
    from app.calibration.build import build_artifact
    from app.calibration.fit import fit_router
    from app.calibration.nested import nested_cv

    fake = FakeEmbedder()
    ex = [Example(text=f"please prove item {i} " + "w " * (i % 9), source="a", weak=float(i % 3 != 0), strong=1.0) for i in range(60)]
    ex += [Example(text=f"what is thing {i} " + "w " * (i % 5), source="b", weak=float(i % 4 != 0), strong=1.0) for i in range(60)]
    p = prepare(Dataset(ex, {"x": "0"}), fake, progress=False)
    fit = fit_router(p, np.arange(len(p.y)), n_splits=3)
    assert fit.params.mixing == TOP_KIND
    ev = nested_cv(p, 3, 2, plain=fit.choices, progress=False)
    assert ev.other_mixing["mixing"] == MIXTURE and set(ev.other_mixing["by_source"]) == set(ev.report) == {"a", "b"}
    art = build_artifact(p, fake, fit, ev, command="test")
    assert art.scorer.mixing == TOP_KIND and art.build["mixing"] == TOP_KIND
    assert art.build["nested_cross_validation"]["other_mixing"]["mixing"] == MIXTURE
    assert "pair" not in art.build  # no known model pair in these sources


def test_an_interrupted_embedding_run_keeps_what_it_embedded(tmp_path, monkeypatch):
    import app.calibration.prepared as prepared

    class FailsOnC(CountingEmbedder):
        def encode(self, texts, progress=False):
            if "ccc" in texts:
                raise KeyboardInterrupt
            return super().encode(texts, progress)

    monkeypatch.setattr(prepared, "CACHE_SAVE_EVERY", 1)
    with pytest.raises(KeyboardInterrupt):
        cached_encode(FailsOnC(), ["a", "bb", "ccc"], tmp_path, progress=False)  # shortest first: a, bb saved
    e = CountingEmbedder()
    cached_encode(e, ["a", "bb", "ccc"], tmp_path, progress=False)
    assert e.seen == ["ccc"]
