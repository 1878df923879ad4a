"""What the execution check adds to the verifier: its verdict on "complete this assertion" requests, with the check on and off.

The shipped verifier (app/verification/artifacts/default.json) judges tier 1's answers to requests that ask
what a Python function returns. Measured in this process, interleaved (each request with the check off,
then on, then off again ...) so that drift of a shared machine hits both alike: p50 and p90 per verdict, and
the ratio on/off. The check's cache is cleared before every timed call (a verdict on a new answer); a
repeated (request, answer) pair is answered from the cache. Also printed: how often the verdict was +1 /
-1 / 0 on these answers (their own gold is not known to the script; the cases are written to be right or
wrong), and one JSON line.

Usage: .venv/bin/python scripts/bench_execution.py [--rounds 5]   (or `make bench-execution`)
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

import numpy as np
from common import cpu_name

from app.verification import execution
from app.verification.artifact import load_verifier
from app.verification.verifier import Answer, Verifier

INSTR = (
    "You are given a Python function and an assertion containing an input to the function. Complete the assertion "
    "with a literal (no unsimplified expressions, no function calls) containing the output when executing the "
    "provided code on the given input, even if the function is incorrect or incomplete.\n\n"
)
CASES = [  # (function, call, an answer, the function's real output: the answer is right when they are equal)
    ("def f(nums):\n    return sorted(nums)[::-1]", "f([2, 7, 1])", "[7, 2, 1]"),
    ("def f(nums):\n    return sorted(nums)[::-1]", "f([2, 7, 1])", "[1, 2, 7]"),
    ("def f(text):\n    return text.replace('a', 'o').upper()", "f('banana')", "'BONONO'"),
    ("def f(text):\n    return text.replace('a', 'o').upper()", "f('banana')", "'BANANA'"),
    ("def f(d):\n    out = {}\n    for k, v in d.items():\n        out[v] = out.get(v, 0) + len(k)\n    return out", "f({'ab': 1, 'c': 1, 'de': 2})", "{1: 3, 2: 2}"),
    ("def f(d):\n    out = {}\n    for k, v in d.items():\n        out[v] = out.get(v, 0) + len(k)\n    return out", "f({'ab': 1, 'c': 1, 'de': 2})", "{1: 2, 2: 2}"),
    ("def f(n):\n    total = 0\n    for i in range(n):\n        if i % 3 == 0:\n            total += i\n    return total", "f(10)", "18"),
    ("def f(n):\n    total = 0\n    for i in range(n):\n        if i % 3 == 0:\n            total += i\n    return total", "f(10)", "27"),
]  # fmt: skip


def cases() -> list[Answer]:
    out = []
    for code, call, ans in CASES:
        request = f"{INSTR}[PYTHON]\n{code}\nassert {call} == ??\n[/PYTHON]"
        answer = json.dumps({"reasoning": "Following the function step by step gives the result.", "answer": ans})
        out.append(Answer(request, answer))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    opts = ap.parse_args()
    art = load_verifier(None)
    on, off = Verifier(art), Verifier(art, execute=False)
    answers = cases()
    times: dict[str, list[float]] = {"off": [], "on": []}
    verdicts: Counter[float] = Counter()
    for a in answers:  # warm both paths once
        on.verdict(a, {}), off.verdict(a, {})
    for _ in range(opts.rounds):
        for a in answers:
            for name, v in (("off", off), ("on", on)):
                execution._run.cache_clear()
                t0 = time.perf_counter()
                verdict = v.verdict(a, {})
                times[name].append((time.perf_counter() - t0) * 1000)
                if name == "on":
                    verdicts[verdict.signals.get("exec_verdict", 0.0)] += 1
    p = {k: (float(np.percentile(t, 50)), float(np.percentile(t, 90))) for k, t in times.items()}
    print(f"CPU: {cpu_name()}; {len(answers)} answers x {opts.rounds} rounds")
    for k in ("off", "on"):
        print(f"  execution check {k:<3}  p50 {p[k][0]:7.2f} ms   p90 {p[k][1]:7.2f} ms")
    print(f"  ratio on/off (p50): {p['on'][0] / p['off'][0]:.1f}x   added p50: {p['on'][0] - p['off'][0]:.1f} ms")
    print(f"  verdicts with the check on: +1 {verdicts[1.0]}, -1 {verdicts[-1.0]}, 0 {verdicts[0.0]}")
    print(json.dumps({"p50_ms": {k: round(v[0], 3) for k, v in p.items()}, "ratio_p50": round(p["on"][0] / p["off"][0], 2),
                      "verdicts": {str(k): n for k, n in verdicts.items()}}))  # fmt: skip


if __name__ == "__main__":
    main()
