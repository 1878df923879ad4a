"""What the scripts and the serving tests share: the repo root, the local config, prompts, a free port, the CPU's name."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the embedding model is packaged: no hub
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # a script runs with scripts/ on sys.path, not the repo root
    sys.path.insert(0, str(ROOT))

from app.serve.local import free_port  # noqa: E402,F401  (the scripts' and tests' free loopback port)


def cpu_name() -> str:
    """The CPU's model name (figures say which CPU they came from)."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), platform.processor())
    except OSError:
        return platform.processor() or platform.machine()


def local_args() -> dict:
    """``build_app``'s arguments in configs/local.yaml (a fresh copy each call)."""
    import yaml

    return yaml.safe_load((ROOT / "configs/local.yaml").read_text())["applications"][0]["args"]


def calibration_prompts(n: int = 0) -> list[str]:
    """The shipped exemplars' prompts, then ../shared/data's when present; the first ``n`` (0: all)."""
    from app.calibration.data import load_file, load_shared_dir

    texts = [e.text for e in load_file(ROOT / "app/calibration/exemplars/exemplars.jsonl").examples]
    shared = ROOT.parent / "shared" / "data"
    if shared.is_dir():
        texts += [e.text for e in load_shared_dir(shared).examples]
    return texts[:n] if n else texts

