"""The host's CPU as a report states it: model, cores, and the flags the embedder's speed depends on."""

from __future__ import annotations

import os
from pathlib import Path

# bf16 matrix units used by the embedder (OpenVINO bfloat16): Intel AMX tiles, else AVX512-BF16 dot products
FLAGS_THAT_MATTER = ("amx_tile", "amx_bf16", "amx_int8", "avx512_bf16", "avx512f", "avx2")


def cpu_info(cpuinfo: str | None = None) -> dict:
    """``{"model", "cores", "flags": {flag: bool}}`` from /proc/cpuinfo (or the given text)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model, flags = "unknown", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown":
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return {"model": model, "cores": cores, "flags": {f: f in flags for f in FLAGS_THAT_MATTER}}


def describe(info: dict) -> str:
    on = [f for f, v in info["flags"].items() if v and f in ("amx_bf16", "amx_tile", "avx512_bf16")]
    return f"{info['model']}, {info['cores']} cores available, bf16 units: {', '.join(on) or 'none (float32)'}"
