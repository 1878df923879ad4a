"""The gold-answer task that measures the local tier 1's verifier (app.verification.gold): the shipped file
is what its generator makes, every gold answer is right, and grading reads answers as a person would."""

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from app.verification.gold import KINDS, LEVELS, extracted, generate, grade

ROOT = Path(__file__).resolve().parents[1]
TASK = ROOT / "app/verification/tasks/arithmetic.jsonl"


def test_the_shipped_task_is_the_generators_output_with_a_fixed_seed():
    shipped = [json.loads(line) for line in TASK.read_text(encoding="utf-8").splitlines()]
    assert shipped == generate() == generate(18, 0)
    assert generate(18, 1) != shipped  # another seed, other items
    assert len(shipped) == 324 and len({it["id"] for it in shipped}) == 324
    assert Counter((it["kind"], it["level"]) for it in shipped) == {(k, lv): 18 for k in KINDS for lv in LEVELS}


def test_every_gold_answer_is_right():
    for it in generate():
        q = it["question"]
        if it["kind"] in ("add", "sub", "mul"):
            a, op, b = re.search(r"What is (\d+) ([-+*]) (\d+)\?", q).groups()
            assert int(it["gold"]) == {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
            assert int(it["gold"]) >= 0
        elif it["kind"] == "compare":
            a, b = map(int, re.search(r"larger, (\d+) or (\d+)\?", q).groups())
            assert a != b and int(it["gold"]) == max(a, b)
        elif it["kind"] == "next":
            assert int(it["gold"]) == int(re.search(r"after (\d+)\?", q).group(1)) + 1
        else:
            assert re.search(rf"exactly: {it['gold']}\.", q) and it["gold"].isalpha()


def test_harder_levels_have_more_digits_or_closer_numbers():
    items = generate()
    add = {lv: max(int(it["gold"]) for it in items if it["kind"] == "add" and it["level"] == lv) for lv in LEVELS}
    assert add[1] <= 18 < add[3]
    gaps = [abs(int(a) - int(b)) for it in items if it["kind"] == "compare" and it["level"] == 3 for a, b in [re.findall(r"\d+", it["question"])]]
    assert max(gaps) <= 9


ADD = {"kind": "add", "question": "What is 8 + 7? Reply with the answer only.", "gold": "15"}
CMP = {"kind": "compare", "question": "Which number is larger, 38 or 83? Reply with the answer only.", "gold": "83"}
COPY = {"kind": "copy", "question": "Repeat this word exactly: kiaqbgl. Reply with the answer only.", "gold": "kiaqbgl"}


@pytest.mark.parametrize(
    "item, answer, right",
    [
        (ADD, "15", True),
        (ADD, "8 + 7 = 15.", True),
        (ADD, "To solve this, add 8 and 7.\n\nThe answer is 55.", False),  # the stated answer counts, not the operands
        (ADD, "The answer is 15. Adding 8 and 7 gives 1 more than 14.", True),
        (ADD, "We add 8 and 7 = 16", False),
        (ADD, "I cannot help with that.", False),
        (CMP, "83 is larger than 38.", True),
        (CMP, "38 is larger than 83.", False),  # the number it names first
        (CMP, "The answer is 83.", True),
        (COPY, "The answer is: kiaqbgl.", True),
        (COPY, "The answer is: kiaqbg.", False),
        (COPY, "Kiaqbgl", False),  # exactly: case counts
    ],
)  # fmt: skip
def test_grading(item, answer, right):
    assert grade(item, answer) is right


def test_extracted_is_none_without_an_answer():
    assert extracted(ADD, "no idea") is None and extracted(COPY, "...") is None
