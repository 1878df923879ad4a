"""The artifact card (`tierroute show`): figures and verdicts come from what calibrate recorded."""

import pytest

from app.routing.artifact import load_artifact
from app.calibration.card import BEATS, LABELS, LOSES, NO_INTERVAL, TIES, card, format_card, verdict


def row(lift, low, high, metric="APGR", repeats=1):
    r = {"metric": metric, "n": 100, "router": 0.6 + lift, "prompt length": 0.6, "random": 0.5}
    if metric == "APGR":
        r["lift over length"] = {"lift": lift, "low": low, "high": high, "level": 0.9}
    if repeats > 1:
        r["router by repeat"] = [0.6 + lift] * repeats
    return r


@pytest.mark.parametrize(
    "r, expected",
    [
        (row(0.05, 0.01, 0.09), BEATS),
        (row(0.01, -0.02, 0.04), TIES),
        (row(-0.03, -0.05, -0.01), LOSES),
        (row(0.0, 0.0, 0.0, metric="AUC"), LABELS),
        ({"metric": "APGR", "router": 0.7, "prompt length": 0.6}, NO_INTERVAL),
    ],
)
def test_verdict_reads_the_interval_of_the_lift(r, expected):
    assert verdict(r) == expected


def shipped_with(build=None, **update):
    art = load_artifact()
    return art.model_copy(update={"build": build if build is not None else art.build, **update})


def test_card_reports_each_source_and_names_those_not_better_than_length():
    build = {
        "tierroute_version": "9.9",
        "command": "tierroute calibrate --data mine.jsonl --output mine.json",
        "data": {"checksums": {"a.csv": "x", "b.csv": "y"}},
        "nested_cross_validation": {
            "by_source": {
                "good": row(0.06, 0.03, 0.09, repeats=3),
                "even": row(-0.004, -0.02, 0.01),
                "bad": row(-0.04, -0.07, -0.01),
                "probe": row(0.3, 0, 0, metric="AUC"),
                "unknown": {"metric": "APGR", "n": 50, "router": 0.6, "prompt length": 0.6, "random": 0.5},
            }
        },
    }
    c = card(shipped_with(build))
    assert c["quality"]["good"]["verdict"] == BEATS and c["quality"]["good"]["repeats"] == 3
    assert c["quality"]["good"]["router"] == pytest.approx(0.66) and c["quality"]["good"]["low"] == 0.03
    # the label-only probe has no lift to judge, and a source without an interval is not judged either
    assert c["not_better_than_length"] == ["even", "bad"]
    assert c["quality"]["unknown"]["verdict"] == NO_INTERVAL
    assert c["data_files"] == 2 and c["tierroute_version"] == "9.9"
    assert c["labels_only"] == ["chat"]  # the shipped chat expert learnt from exemplars' labels
    text = format_card(c)
    assert "routes no better than prompt length" in text and "even, bad" in text
    assert "mine.json" in text and LOSES in text and BEATS in text


def test_card_of_an_artifact_without_figures_or_with_a_fitted_router_llm():
    art = shipped_with({})
    hybrid = art.hybrid.model_copy(update={"fitted": True, "llm_weight": 0.3})
    text = format_card(card(art.model_copy(update={"hybrid": hybrid})))
    assert "no nested cross-validation recorded" in text
    assert "router LLM: fitted, weight 0.30" in text
    assert "routes no better than prompt length" not in text
    assert "not fitted" in format_card(card(art))
