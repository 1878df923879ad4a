"""The execution check: run the code a request asks about, and see whether tier 1's answer holds.

Some requests carry their own ground truth: "here is a Python function; complete ``assert f(x) == ??``"
(predict the output) or "complete ``assert f(??) == y``" (find an input), as CRUXEval asks. For those the
verifier need not guess: :func:`execution_verdict` runs the function on the given input (or on tier 1's
input) in a sandbox and compares with tier 1's final answer -- +1 when the answer holds, -1 when it does
not, 0 when it could not tell (not such a request, code outside the allow-list, an error, a timeout).
The verifier reads it as the feature ``exec_verdict`` (:mod:`app.verification.features`), so an expert
fitted with it still ranks the failures by how likely tier 2 is to do better.

**What runs, and how it is contained** (docs/verifier.md, "The execution check"):

* only the last Python block of a request (``[PYTHON] ... [/PYTHON]`` or a ``python`` fence) that ends
  with such an assertion, and only code that passes :func:`allowed`: no ``import``, no ``match``, no
  attribute starting with ``_`` or reaching frames (``gi_frame``, ``f_back`` ...), no name starting with
  ``__`` (so no dunder or frame escapes), no string holding ``__x``, none of ``exec``/``eval``/``open``
  and the like, at most :data:`MAX_CODE_CHARS` characters;
* tier 1's answer is substituted into an input only when it is a Python literal (``ast.literal_eval``);
* in a separate, isolated interpreter (``python -I -S``, empty environment) that, before running the
  code, limits itself (CPU seconds, address space, no files written, no new processes) and replaces
  the builtins with :data:`SAFE_BUILTINS`; killed after ``timeout_s``; at most :data:`MAX_RUNNING` at once
  per process. Nothing the code prints or returns reaches a client or a log: only the verdict is kept.

Serving runs it where ``routing.cascade.execute_code`` is on (the default); ``tierroute verify --no-execute``
turns it off offline. Off, the feature is 0 (could not tell), as for any other request.
"""

from __future__ import annotations

import ast
import functools
import json
import re
import subprocess
import sys
import threading
import warnings
from dataclasses import dataclass

HOLE = "_hole_"  # what ``??`` becomes before the block is parsed
MAX_CODE_CHARS = 20_000
MAX_ANSWER_CHARS = 5_000
MAX_RUNNING = 4  # sandboxes at once in one process
TIMEOUT_S = 2.0
MEMORY_BYTES = 512 * 2**20
_running = threading.BoundedSemaphore(MAX_RUNNING)

_BLOCK = re.compile(r"\[PYTHON\]\s*\n(.*?)\n\s*\[/PYTHON\]|```(?:python|py)[ \t]*\n(.*?)```", re.S)
DENIED_NAMES = frozenset(
    "exec eval compile open globals locals vars getattr setattr delattr breakpoint memoryview super object".split()
)  # none is among SAFE_BUILTINS either: a second wall
_DUNDER = re.compile(r"__[A-Za-z]")
# attributes that reach frames and code objects without an underscore (gen.gi_frame.f_back.f_globals ...)
_FRAME_ATTR = re.compile(r"^(?:gi|cr|ag|f|tb|co)_")
SAFE_BUILTINS = (
    "abs all any ascii bin bool bytearray bytes callable chr dict divmod enumerate filter float format frozenset "
    "hash hex int isinstance issubclass iter len list map max min next oct ord pow print range repr reversed round "
    "set slice sorted str sum tuple type zip ArithmeticError AssertionError AttributeError Exception IndexError "
    "KeyError LookupError NameError NotImplementedError OverflowError RecursionError RuntimeError StopIteration "
    "TypeError ValueError ZeroDivisionError"
).split()


@dataclass(frozen=True)
class CodeCheck:
    """What a request asks: ``code`` (definitions), ``call`` (the assertion's left side, source) and
    ``mode``: ``output`` (``call == ??``: the answer is what ``call`` returns; ``expected`` is None) or
    ``input`` (``f(??) == expected``: the answer is the arguments; ``expected`` is the right side's source)."""

    code: str
    call: str
    mode: str
    expected: str | None = None


def code_check(request: str) -> CodeCheck | None:
    """The request's code check: that of its last Python block that ends with an assertion to complete (a block of
    code added after it does not hide it), or None when none does about code :func:`allowed` lets run."""
    if "??" not in request or "assert" not in request:
        return None
    for block in reversed([a or b for a, b in _BLOCK.findall(request)]):
        if "??" in block and (check := _block_check(block)) is not None:
            return check
    return None


def _block_check(block: str) -> CodeCheck | None:
    if len(block) > MAX_CODE_CHARS or HOLE in block:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(block.replace("??", HOLE))
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    if not tree.body or not isinstance(tree.body[-1], ast.Assert):
        return None
    test = tree.body[-1].test
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return None
    left, right = test.left, test.comparators[0]
    holes = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == HOLE]
    if len(holes) != 1:
        return None
    code = ast.Module(body=tree.body[:-1], type_ignores=[])
    if isinstance(right, ast.Name) and right.id == HOLE and isinstance(left, ast.Call):
        check = CodeCheck(ast.unparse(code), ast.unparse(left), "output")
    elif isinstance(left, ast.Call) and len(left.args) == 1 and not left.keywords and left.args[0] is holes[0]:
        check = CodeCheck(ast.unparse(code), ast.unparse(left.func), "input", ast.unparse(right))
    else:
        return None
    return check if allowed(ast.parse(f"{check.code}\n{check.call}\n{check.expected or ''}")) else None


def allowed(tree: ast.AST) -> bool:
    """Whether code may run in the sandbox: no imports, no ``match`` (its class patterns read attributes), no
    attribute starting with ``_`` or reaching frames and code (``gi_frame``, ``f_back``, ``tb_frame``, ``co_code``
    ...), no name starting with ``__``, no string holding a dunder-like ``__x``, none of :data:`DENIED_NAMES`."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.AsyncFunctionDef, ast.Await, ast.Match)):
            return False
        if isinstance(node, ast.Name) and (node.id.startswith("__") or node.id in DENIED_NAMES):
            return False
        if isinstance(node, ast.Attribute) and (node.attr.startswith("_") or _FRAME_ATTR.match(node.attr)):
            return False
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name.startswith("__"):
            return False
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _DUNDER.search(node.value):
            return False
    return True


def literal_source(text: str) -> str | None:
    """``text`` when it is a Python literal (safe to place in code), else None."""
    if len(text) > MAX_ANSWER_CHARS:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return text


# The sandbox's program: limits itself, then runs the code with SAFE_BUILTINS and prints 1 (the answer
# holds) or 0 (it does not). Its input (stdin, JSON): code, call, mode, answer, expected, builtins, limits.
_RUNNER = r"""
import ast, builtins, json, resource, sys
job = json.loads(sys.stdin.read())
cpu = job["cpu_s"]
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
resource.setrlimit(resource.RLIMIT_AS, (job["memory"], job["memory"]))
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
sys.setrecursionlimit(2000)
out = sys.stdout
safe = {n: getattr(builtins, n) for n in job["builtins"]}
safe["print"] = lambda *a, **k: None
env = {"__builtins__": safe}
exec(compile(job["code"], "<request>", "exec"), env)
if job["mode"] == "output":
    got = eval(job["call"], env)
    answer = job["answer"]
    try:
        holds = ast.literal_eval(answer) == got
    except Exception:
        holds = False
    holds = holds or (isinstance(got, str) and got == answer)
else:
    holds = eval(job["call"] + "(" + job["answer"] + ")", env) == eval(job["expected"], env)
out.write("1" if holds else "0")
out.flush()
"""


def execution_verdict(request: str, final: str | None, timeout_s: float = TIMEOUT_S) -> float:
    """+1 when tier 1's final answer ``final`` holds for the request's code check, -1 when it does not, 0
    when it cannot tell (no check in the request, no final answer, an error, a timeout)."""
    check = code_check(request)
    if check is None or final is None:
        return 0.0
    answer = final.strip()
    if check.mode == "input":
        answer = literal_source(answer) or ""
        if not answer:
            return 0.0
    elif len(answer) > MAX_ANSWER_CHARS:
        return 0.0
    return _run(check, answer, timeout_s)


@functools.lru_cache(maxsize=2048)
def _run(check: CodeCheck, answer: str, timeout_s: float) -> float:
    job = {
        "code": check.code, "call": check.call, "mode": check.mode, "expected": check.expected, "answer": answer,
        "builtins": SAFE_BUILTINS, "cpu_s": max(1, int(timeout_s + 0.999)), "memory": MEMORY_BYTES,
    }  # fmt: skip
    with _running:
        try:
            done = subprocess.run(
                [sys.executable, "-I", "-S", "-c", _RUNNER], input=json.dumps(job), capture_output=True, text=True,
                timeout=timeout_s, env={}, cwd="/", check=False,
            )  # fmt: skip
        except (subprocess.TimeoutExpired, OSError):
            return 0.0
    if done.returncode != 0:
        return 0.0
    return {"1": 1.0, "0": -1.0}.get(done.stdout.strip()[-1:], 0.0)
