import os
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "scripts"))  # common.py: free_port, local_args, shared with the scripts


class FakeEmbedder:
    """Unit-test double: 8-d unit vectors; texts mentioning 'prove' or 'derive' point one way."""

    model_id = "test/fake-embedder"
    dim = 8

    class config:
        prefix = ""

    def encode(self, texts, progress=False):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            rng = np.random.default_rng(zlib.crc32(t.encode()))  # stable across processes, unlike hash()
            v = rng.normal(0, 0.3, self.dim)
            v[0] += 2.0 if ("prove" in t or "derive" in t) else -2.0
            out[i] = v / np.linalg.norm(v)
        return out


@pytest.fixture
def fake_embedder():
    return FakeEmbedder()


@pytest.fixture(scope="session")
def real_embedder():
    from app.routing.embed import get_embedder

    return get_embedder()


def openai_error(r, status: int) -> dict:
    """The ``error`` object of an HTTP response that must be ``status`` in OpenAI's error shape."""
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    return err


# --- exit ---------------------------------------------------------------------------------------
# After every test has passed and pytest has written its summary, the interpreter's own teardown of the
# native extensions loaded into this one process (Ray's core worker, vLLM, OpenVINO, torch) has crashed
# with SIGSEGV once in three full runs on a fresh clone (329 passed, then "Segmentation fault"); the
# serve tests alone and each new test file alone never did. So the session ends with pytest's exit
# status as soon as pytest itself is done, skipping only that teardown (Ray is shut down by each
# fixture already).


def pytest_sessionfinish(session, exitstatus):
    session.config._tierroute_exitstatus = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    status = getattr(config, "_tierroute_exitstatus", None)
    if status is not None and os.environ.get("TIERROUTE_PYTEST_CLEAN_EXIT", "1") == "1":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
