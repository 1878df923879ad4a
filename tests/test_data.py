import json

import pytest

from app.calibration.data import DataError, load, load_file, load_shared_dir
from conftest import SHARED_DATA


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_jsonl_with_outcomes_and_labels(tmp_path):
    p = write(
        tmp_path,
        "d.jsonl",
        "\n".join(
            json.dumps(r)
            for r in [
                {"prompt": "a", "weak": False, "strong": True},
                {"prompt": "b", "weak": 1, "strong": 1},
                {"messages": [{"role": "user", "content": "c"}], "label": "complex"},
                {"prompt": "d", "label": "simple", "category": "intent"},
            ]
        ),
    )
    ds = load(p)
    assert [e.target for e in ds.examples] == [1, 0, 1, 0]
    assert ds.examples[2].text == "c" and ds.examples[3].group == "intent"
    assert ds.examples[0].source == "d" and str(p) in ds.checksums


def test_csv_with_routellm_columns_and_custom_pair(tmp_path):
    p = write(tmp_path, "m.csv", "prompt,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview\nq1,False,True\nq2,True,True\n")
    assert [e.target for e in load_file(p).examples] == [1, 0]
    p2 = write(tmp_path, "c.csv", "prompt,small,big\nq,0.2,0.9\n")
    assert load_file(p2, pair=("small", "big")).examples[0].strong == 0.9


@pytest.mark.parametrize(
    "line,msg",
    [
        ('{"prompt": "a"}', "no outcomes and no label"),
        ('{"prompt": "", "label": 1}', "non-empty 'prompt'"),
        ('{"prompt": "a", "label": "maybe"}', "label 'maybe'"),
        ('{"prompt": "a", "weak": "x", "strong": 1}', "cannot read outcome"),
        ("[1, 2]", "expected a JSON object"),
        ("{not json", "invalid JSON"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, line, msg):
    p = write(tmp_path, "bad.jsonl", '{"prompt": "ok", "label": 0}\n' + line + "\n")
    with pytest.raises(DataError, match=msg) as e:
        load_file(p)
    assert f"{p}:2" in str(e.value)


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_file(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="unsupported"):
        load_file(write(tmp_path, "x.txt", "hi"))
    with pytest.raises(DataError, match="no calibration data"):
        load_shared_dir(tmp_path)


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not present")
def test_shared_dir_layout_and_needs_strong_rates():
    ds = load_shared_dir(SHARED_DATA)
    mmlu, gsm, arena = ([e for e in ds.examples if e.source == s] for s in ("mmlu", "gsm8k", "arena-hard"))
    assert len(mmlu) == 4149 and len(gsm) == 391 and len(arena) == 500
    # SOURCES.md: needs_strong is 18 % of MMLU and 27 % of GSM8K prompts
    assert round(100 * sum(e.target for e in mmlu) / len(mmlu)) == 18
    assert round(100 * sum(e.target for e in gsm) / len(gsm)) == 27
    assert {e.group for e in mmlu} >= {"abstract_algebra", "professional_law"}
    assert all(e.target == 1 for e in arena)


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not present")
def test_shared_dir_reads_the_llama_pairs_as_kinds_of_their_own_and_never_alpacaeval():
    from app.calibration.data import pair_source
    from app.calibration.prepared import kind_of

    ds = load_shared_dir(SHARED_DATA)
    n = {s: sum(e.source == s for e in ds.examples) for s in ds.sources()}
    llama = {pair_source(k, "llama31_8b_vs_70b"): rows for k, rows in (("mmlu-pro", 4650), ("gsm8k", 391), ("math-l5", 341), ("crux", 390))}
    assert {s: n.get(s) for s in llama} == llama
    assert {kind_of(e) for e in ds.examples if e.source in llama} == {"mmlu-pro", "gsm8k", "math-l5", "crux"}
    pro = [e for e in ds.examples if e.source == "mmlu-pro:llama31-8b-vs-70b"]
    assert round(100 * sum(e.target for e in pro) / len(pro)) == 25 and {e.group for e in pro} >= {"law", "math"}
    assert not any("alpaca" in s or "arena-bench" in s for s in n)
    old = load_shared_dir(SHARED_DATA, pairs=())  # the sources before the pair files, as they were
    assert old.sources() == ["arena-hard", "gsm8k", "gsm8k:gpt3-6b-vs-175b", "mmlu"]
    bench = load_shared_dir(SHARED_DATA, pairs=(), arena_bench=("gpt35_vs_gpt4",))
    judged = [e for e in bench.examples if e.source == "arena-bench:gpt35-vs-gpt4"]
    assert len(judged) == 149 and all(1 <= e.weak <= 10 for e in judged)
