"""A self-written task with gold answers, to measure how well a verifier tells tier 1's right answers from wrong ones.

Short questions a small instruct model (SmolLM2-135M) partly solves: addition, subtraction,
multiplication, comparing two numbers, the number after one, and copying a letter string, each
at three levels of difficulty (more digits, closer numbers, longer strings). :func:`generate` makes
them from a seed (``scripts/make_gold_task.py`` writes ``app/verification/tasks/arithmetic.jsonl``);
:func:`grade` checks an answer against the gold one.

Grading reads the answer the way a person would: the stated final answer (``answer is 42``,
``\\boxed{42}``), else the number after the last ``=``, else the last number; for a comparison, the
first of the two asked numbers it names. A copy is right when the string appears in the answer as a
word, letter for letter.
"""

from __future__ import annotations

import random
import re
import string

from app.verification.features import final_answer

KINDS = ("add", "sub", "mul", "compare", "next", "copy")
LEVELS = (1, 2, 3)
SUFFIX = " Reply with the answer only."
_NUM = re.compile(r"-?\d+(?:,\d{3})*")


def _pair(rng: random.Random, kind: str, level: int) -> tuple[int, int]:
    """Two operands of ``kind`` at ``level``: more digits, or closer numbers, at higher levels."""
    d = lambda lo, hi: rng.randint(lo, hi)  # noqa: E731
    if kind in ("add", "sub"):
        a, b = {1: (d(1, 9), d(1, 9)), 2: (d(10, 99), d(1, 9)), 3: (d(10, 99), d(10, 99))}[level]
        return (max(a, b), min(a, b)) if kind == "sub" else (a, b)
    if kind == "mul":
        return {1: (d(2, 5), d(2, 5)), 2: (d(2, 9), d(2, 9)), 3: (d(11, 99), d(2, 9))}[level]
    if kind == "compare":  # 1: far apart; 2: any two 2-digit numbers; 3: 3-digit, within 9
        if level == 1:
            a = d(10, 60)
            return a, a + d(30, 39)
        if level == 2:
            a, b = rng.sample(range(10, 100), 2)
            return a, b
        a = d(100, 990)
        return a, a + d(1, 9)
    raise ValueError(f"unknown kind {kind!r}")


def make_item(rng: random.Random, kind: str, level: int) -> dict:
    """One question of ``kind`` at ``level`` (1 easiest): ``{"kind", "level", "question", "gold"}``."""
    if kind == "copy":
        word = "".join(rng.choice(string.ascii_lowercase) for _ in range({1: 3, 2: 5, 3: 8}[level]))
        return {"kind": kind, "level": level, "question": f"Repeat this word exactly: {word}.{SUFFIX}", "gold": word}
    if kind == "next":
        n = {1: rng.randint(0, 20), 2: rng.randint(21, 98), 3: rng.randint(100, 998)}[level]
        return {"kind": kind, "level": level, "question": f"What number comes right after {n}?{SUFFIX}", "gold": str(n + 1)}
    a, b = _pair(rng, kind, level)
    if kind == "compare":
        a, b = (a, b) if rng.random() < 0.5 else (b, a)  # the larger one first half of the time
        q, gold = f"Which number is larger, {a} or {b}?", max(a, b)
    else:
        op, gold = {"add": ("+", a + b), "sub": ("-", a - b), "mul": ("*", a * b)}[kind]
        q = f"What is {a} {op} {b}?"
    return {"kind": kind, "level": level, "question": q + SUFFIX, "gold": str(gold)}


def generate(per_cell: int = 18, seed: int = 0) -> list[dict]:
    """``per_cell`` items of every kind and level, in a fixed order, each with an ``id``."""
    rng = random.Random(seed)
    items = [make_item(rng, k, lv) for k in KINDS for lv in LEVELS for _ in range(per_cell)]
    return [{"id": f"{it['kind']}-{it['level']}-{i:03d}", **it} for i, it in enumerate(items)]


def _numbers(text: str) -> list[str]:
    return [n.replace(",", "") for n in _NUM.findall(text)]


def extracted(item: dict, answer: str) -> str | None:
    """The answer ``answer`` gives to ``item``, as grading reads it (None when it gives none)."""
    if item["kind"] == "copy":
        words = re.findall(r"[A-Za-z]+", answer)
        return item["gold"] if item["gold"] in words else (words[-1] if words else None)
    stated = final_answer(answer)
    if stated and _numbers(stated):
        return _numbers(stated)[0]
    if "=" in answer and _numbers(answer.rsplit("=", 1)[1]):
        return _numbers(answer.rsplit("=", 1)[1])[0]
    nums = _numbers(answer)
    if not nums:
        return None
    if item["kind"] == "compare":
        asked = set(_numbers(item["question"]))
        named = [n for n in nums if n in asked]
        return named[0] if named else nums[0]
    return nums[-1]


def grade(item: dict, answer: str) -> bool:
    """Whether ``answer`` gives ``item``'s gold answer."""
    return extracted(item, answer) == item["gold"]
