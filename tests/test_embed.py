"""The CPU runtimes (ONNX Runtime, OpenVINO): exported once, cached, and the same embeddings as torch."""

import numpy as np
import pytest
from pydantic import ValidationError

from app.routing.embed import Embedder, EmbedderConfig, cache_dir

pytestmark = pytest.mark.slow

TEXTS = [
    "hi",
    "  What is the capital of France?  ",
    "Prove that the square root of 2 is irrational.",
    "word " * 600,  # past the model's 256-token window: truncated alike
    "Ünïcödé ☃ 中文",
    *[f"item {i} " * (i % 13 + 1) for i in range(11)],
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("cache")
    mp.setenv("TIERROUTE_CACHE", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def torch_emb():
    return Embedder(EmbedderConfig(batch_size=4)).encode(TEXTS)


def test_onnx_matches_torch_and_is_exported_once(cache, torch_emb):
    onnx = Embedder(EmbedderConfig(backend="onnx", num_threads=1, batch_size=4))
    exported = list((cache / "onnx").glob("*.onnx"))
    assert cache_dir() == cache and len(exported) == 1
    onnx_emb = onnx.encode(TEXTS)
    assert onnx_emb.shape == torch_emb.shape == (len(TEXTS), 384) and onnx_emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(onnx_emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(onnx_emb, torch_emb, atol=1e-4)
    assert not np.allclose(onnx_emb[0], onnx_emb[1], atol=1e-2)  # different texts, different vectors
    # a batch of one (no padding) agrees with the same text inside a padded batch
    np.testing.assert_allclose(onnx.encode([TEXTS[2]])[0], onnx_emb[2], atol=1e-5)

    mtime = exported[0].stat().st_mtime_ns
    Embedder(EmbedderConfig(backend="onnx"))  # a second load reuses the export
    assert [p.stat().st_mtime_ns for p in (cache / "onnx").glob("*.onnx")] == [mtime]
    assert not list((cache / "onnx").glob("*.tmp"))


def test_openvino_float32_matches_torch(cache, torch_emb):
    ov = Embedder(EmbedderConfig(backend="openvino", num_threads=1, batch_size=4))
    assert ov.precision == "float32"
    emb = ov.encode(TEXTS)
    assert emb.shape == (len(TEXTS), 384) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, torch_emb, atol=1e-4)
    np.testing.assert_allclose(ov.encode([TEXTS[2]])[0], emb[2], atol=1e-5)
    assert len(list((cache / "onnx").glob("*.onnx"))) == 1  # the same export as the onnx backend


def test_openvino_bfloat16_is_close_to_float32(cache, torch_emb):
    ov = Embedder(EmbedderConfig(backend="openvino", precision="bfloat16", batch_size=4))
    emb = ov.encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    cos = (emb * torch_emb).sum(1)
    assert cos.min() > 0.999, cos
    if ov.precision == "bfloat16":  # this CPU has bf16 units: the numbers differ, if only a little
        assert np.abs(emb - torch_emb).max() > 1e-5
    else:
        np.testing.assert_allclose(emb, torch_emb, atol=1e-4)


def test_cpu_runtimes_validation():
    for backend in ("onnx", "openvino"):
        with pytest.raises(ValidationError, match="backend"):
            EmbedderConfig(backend=backend, device="cuda")
    for backend in ("torch", "onnx"):
        with pytest.raises(ValidationError, match="precision"):
            EmbedderConfig(backend=backend, precision="bfloat16")
    with pytest.raises(ValidationError, match="precision"):
        EmbedderConfig(backend="openvino", precision="float16")
    with pytest.raises(ValidationError, match="num_threads"):
        EmbedderConfig(num_threads=0)
