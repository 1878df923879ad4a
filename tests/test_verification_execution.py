"""The execution check: which requests it runs, what it refuses to run, the sandbox's limits, and the verdict
reaching the verifier's score (serving's Verifier and `tierroute verify`, with and without `--no-execute`)."""

import json
import time

import numpy as np
import pytest

from app.cli import main
from app.verification.artifact import Logit, VerifierArtifact, VerifierExpert
from app.verification.execution import allowed, code_check, execution_verdict
from app.verification.features import _option_number
from app.verification.verifier import Answer, Verifier, answer_features

INSTR = "You are given a Python function and an assertion containing an input to the function. Complete the assertion.\n\n"


def crux(code: str, call: str = "f([3, 1, 2])", expected: str = "??") -> str:
    return f"{INSTR}[PYTHON]\n{code}\nassert {call} == {expected}\n[/PYTHON]"


SORT = "def f(nums):\n    nums.sort()\n    return nums"


def test_it_reads_output_and_input_assertions_in_either_block():
    out = code_check(crux(SORT))
    assert (out.mode, out.call, out.expected) == ("output", "f([3, 1, 2])", None) and "def f(nums)" in out.code
    inp = code_check(crux(SORT, "f(??)", "[1, 2, 3]"))
    assert (inp.mode, inp.call, inp.expected) == ("input", "f", "[1, 2, 3]")
    fenced = f"What does this return?\n```python\n{SORT}\nassert f([2, 1]) == ??\n```"
    assert code_check(fenced).mode == "output"
    assert code_check("What is 2 + 2? ??") is None
    assert code_check(f"{INSTR}[PYTHON]\n{SORT}\nprint(f([1]))\n[/PYTHON] ??") is None  # no assertion to complete
    assert code_check(crux(SORT, "f([1]) + f(??)")) is None  # the hole is neither the output nor the lone input


@pytest.mark.parametrize("code", [
    "import os\ndef f(x):\n    return os.getcwd()",
    "def f(x):\n    return ().__class__.__bases__[0].__subclasses__()",
    "def f(x):\n    return __import__('os').system('true')",
    "def f(x):\n    return getattr(x, 'real')",
    "def f(x):\n    return eval('1')",
    "def f(x):\n    return open('/etc/passwd').read()",
    "def f(x):\n    return '{0.__class__}'.format(x)",
    "def f(x):\n    return object",
    # a running generator's frame leads up to the sandbox program's globals (sys, builtins) without an underscore
    "def f(x):\n    def g():\n        yield gen.gi_frame.f_back.f_back.f_globals\n    gen = g()\n    return next(gen)",
    "def f(x):\n    T = type(x)\n    match x:\n        case T(gi_frame=fr):\n            return fr\n    return 0",
])  # fmt: skip
def test_code_outside_the_allow_list_is_never_run(code):
    assert code_check(crux(code)) is None
    assert execution_verdict(crux(code), "0") == 0.0


def test_allowed_keeps_ordinary_code():
    import ast

    assert allowed(ast.parse("def f(text):\n    for _ in range(2):\n        text = text.replace('_____', ' ')\n    return type(text) is str"))


def test_the_verdict_says_whether_the_answer_holds():
    assert execution_verdict(crux(SORT), "[1, 2, 3]") == 1.0
    assert execution_verdict(crux(SORT), "[3, 2, 1]") == -1.0
    words = crux("def f(s):\n    return s.upper()", "f('ab')")
    assert execution_verdict(words, "'AB'") == 1.0 and execution_verdict(words, "AB") == 1.0  # a literal, or the bare string
    assert execution_verdict(words, "ab") == -1.0
    assert execution_verdict(crux(SORT, "f(??)", "[1, 2, 3]"), "[2, 3, 1]") == 1.0
    assert execution_verdict(crux(SORT, "f(??)", "[1, 2, 3]"), "[2, 3]") == -1.0
    assert execution_verdict(crux(SORT, "f(??)", "[1, 2, 3]"), "__import__('os')") == 0.0  # not a literal: never placed in code
    assert execution_verdict(crux(SORT), None) == 0.0  # no final answer


def test_the_sandbox_stops_runaway_code_and_its_failures_say_could_not_tell():
    start = time.monotonic()
    assert execution_verdict(crux("def f(x):\n    while True:\n        x += 1", "f(1)"), "1", timeout_s=1.0) == 0.0
    assert time.monotonic() - start < 5
    assert execution_verdict(crux("def f(x):\n    return [0] * (10 ** 10)", "f(1)"), "[]") == 0.0  # past the memory limit
    assert execution_verdict(crux("def f(x):\n    return 1 / x", "f(0)"), "1") == 0.0  # raises
    assert execution_verdict(crux("def f(x):\n    print('1')\n    return x", "f(2)"), "3") == -1.0  # its output is not the verdict


def _exec_verifier() -> VerifierArtifact:
    e = VerifierExpert(candidate="t", features=["exec_verdict"], form="needs_strong",
                       model=Logit(coef=[-3.0], intercept=0.0, mean=[0.0], scale=[1.0]))  # fmt: skip
    return VerifierArtifact(pair={"tier1": "a", "tier2": "b"}, experts={"code": e}, threshold=0.5)


def test_the_verifier_escalates_an_answer_the_code_refutes_unless_execution_is_off():
    right, wrong = Answer(crux(SORT), '{"answer": "[1, 2, 3]"}'), Answer(crux(SORT), '{"answer": "[3, 1, 2]"}')
    on = Verifier(_exec_verifier()).verify([right, wrong], None)
    assert [v.escalate for v in on] == [False, True] and on[0].signals == {"exec_verdict": 1.0}
    off = Verifier(_exec_verifier(), execute=False).verify([right, wrong], None)
    assert [v.score for v in off] == [pytest.approx(0.5)] * 2 and off[0].signals == {"exec_verdict": 0.0}
    assert answer_features(wrong)["exec_verdict"] == 0.0 and answer_features(wrong, execute=True)["exec_verdict"] == -1.0


def test_verify_runs_the_check_and_no_execute_turns_it_off(tmp_path, capsys):
    art = tmp_path / "v.json"
    art.write_text(_exec_verifier().model_dump_json())
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": 1, "prompt": crux(SORT), "answer": '{"answer": "[3, 1, 2]"}'}) + "\n")
    for flags, score in (([], 1 / (1 + np.exp(-3))), (["--no-execute"], 0.5)):
        out = tmp_path / "out.jsonl"
        assert main(["verify", "--input", str(inp), "--output", str(out), "--verifier", str(art), "--no-progress", *flags]) == 0
        assert json.loads(out.read_text())["score"] == pytest.approx(score, abs=1e-5)
    capsys.readouterr()


def test_the_chosen_option_is_checked_against_the_number_worked_out():
    q = "How far?\nA. 12 m\nB. 30 m\nC. 45 m"
    agree = _option_number(q, "So 6 * 5 = 30 m. The answer is (B).", "B")
    closest = _option_number(q, "So the distance is 28.2 m, closest to 30. Hmm, 28.2. The answer is (C).", "C")
    assert agree["option_number_exact"] == 1.0 and agree["option_other_closer"] == 0.0 and agree["options_numeric"] == 1.0
    assert closest["option_number_exact"] == 0.0 and closest["option_other_closer"] == 1.0 and closest["option_number_gap"] > 0.3
    assert _option_number("Which?\nA. red\nB. blue", "It is blue. The answer is (B).", "B")["option_number_known"] == 0.0
