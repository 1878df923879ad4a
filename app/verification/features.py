"""Features of tier 1's answer, computed the same way offline and at serve time.

Two families, each a name -> float mapping (names are what an artifact's experts list):

* :func:`text_features` -- from the answer's text alone (and the request's, for overlap): its length,
  whether and how it states a final answer, hedging and self-correction, arithmetic claims that do not
  hold (``12 * 3 = 38``), an answer that runs on past its end, repetition;
* :func:`request_features` -- the request's length and step counts (how hard the problem looks);
* :func:`execution_features` -- where the request asks what its code returns (``assert f(x) == ??``):
  whether the answer holds when the code is run in a sandbox (:mod:`app.verification.execution`);
* :func:`logprob_features` -- from the answer's per-token log-probabilities, when the engine returned
  them: low quantiles, mean, minimum, and the mean over the final answer's span (Gupta et al. 2024:
  low quantiles of per-token log-probabilities beat their mean).
"""

from __future__ import annotations

import ast
import json
import math
import re
import warnings
from collections.abc import Sequence

import numpy as np

from app.routing.text import FEATURE_NAMES, features as _prompt_features
from app.verification.execution import execution_verdict

HEDGES = (
    "approximately", "closest", "close to", "none of the", "not sure", "cannot", "can't", "unclear",
    "assume", "assuming", "however", "but ", "wait", "mistake", "re-evaluate", "reevaluate", "recheck",
    "re-check", "actually", "alternatively", "let's try", "let me try", "correct answer is not", "not among",
    "doesn't match", "does not match", "not listed", "seems", "might", "may be", "estimate", "guess",
)  # fmt: skip
_NUM = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")
_ARITH = re.compile(r"(-?\d+(?:\.\d+)?)\s*([-+*/x×÷])\s*(-?\d+(?:\.\d+)?)\s*=\s*\$?(-?\d+(?:,\d{3})*(?:\.\d+)?)")
_OPTION = re.compile(r"answer is \(?([A-J])\)?")
_BOXED = re.compile(r"\\boxed\{")
_MATH_VERB = re.compile(r"\b(?:Find|Compute|Evaluate|Simplify|Express|Determine|Let|Suppose|Solve for)\b")
_STORY = re.compile(r"\b(?:how many|how much|dollars?|each|per|buys?|sells?|pays?|costs?|earns?|hours?|minutes?|days?)\b", re.I)
TEXT_FEATURES = (
    "log_chars", "log_words", "lines", "has_final", "final_log_chars", "final_is_number", "final_not_integer",
    "final_negative", "final_has_latex", "final_in_request", "hedges", "hedge_rate", "arith_claims",
    "arith_wrong", "arith_wrong_share", "numbers", "distinct_number_share", "runs_on", "repeated_line_share",
    "option_stated", "options_named", "truncated", "equals", "final_matches_last_number", "final_small_integer",
    "final_latex_ops", "final_literal", "final_container", "option_in_body", "request_options",
    "option_number_known", "option_number_gap", "option_number_exact", "option_other_closer", "options_numeric",
)  # fmt: skip
REQUEST_FEATURES = tuple(f"request_{n}" for n in FEATURE_NAMES)  # the router's prompt features, of the request
KIND_FEATURES = REQUEST_FEATURES + ("request_options", "request_code_block", "request_latex", "request_assert", "request_json")
# What tells kinds apart (the verifier's gate): the answer's format and the request's *format* -- lettered
# options, a code block, LaTeX, an assertion -- never its length or wording, so padding or an instruction
# added to a request cannot move it to another kind's expert.
ANSWER_KIND_FEATURES = (
    "answer_json", "answer_latex", "answer_code_words", "answer_quoted_final", "option_stated", "final_is_number",
    "final_small_integer", "final_latex_ops", "final_literal", "final_container", "log_chars",
    "request_options", "request_code_block", "request_latex", "request_assert", "request_math_verb", "request_story",
)  # fmt: skip
CODE_FEATURES = ("code_lines", "code_loops", "code_branches", "code_method_calls", "code_slices", "code_comprehensions", "code_returns")
REQUEST_ALL = KIND_FEATURES + CODE_FEATURES  # every request feature an expert may read
EXEC_FEATURES = ("exec_verdict",)  # the execution check (:mod:`app.verification.execution`)
LOGPROB_FEATURES = ("lp_mean", "lp_min", "lp_q05", "lp_q10", "lp_q25", "lp_median", "lp_final_mean", "lp_tokens")


def final_answer(answer: str) -> str | None:
    """The answer's stated final answer: a JSON ``answer`` field, the last ``\\boxed{}``, "the answer is X",
    or None when it states none."""
    text = answer.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
            if isinstance(obj, dict) and "answer" in obj:
                return str(obj["answer"]).strip()
        except ValueError:
            pass
        m = re.search(r'"answer"\s*:\s*"((?:[^"\\]|\\.)*)"', text)
        if m:
            return m.group(1).strip()
    boxed = [m.end() for m in _BOXED.finditer(answer)]
    if boxed:
        return _balanced(answer, boxed[-1])
    m = list(re.finditer(r"answer is[:\s]*(.+)", answer, flags=re.IGNORECASE))
    if m:
        return m[-1].group(1).strip().rstrip(".").strip()
    return None


def _balanced(text: str, start: int) -> str:
    depth, i = 1, start
    while i < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[start : i - 1 if depth == 0 else i].strip()


def _number(s: str) -> float | None:
    try:
        return float(s.replace(",", "").replace("$", "").strip())
    except ValueError:
        return None


def _arith(answer: str) -> tuple[int, int]:
    """(claims ``a op b = c`` found, those that do not hold within rounding)."""
    claims = wrong = 0
    for a, op, b, c in _ARITH.findall(answer):
        x, y, z = float(a), float(b), float(c.replace(",", ""))
        if op in "/÷" and y == 0:
            continue
        v = {"+": x + y, "-": x - y, "*": x * y, "x": x * y, "×": x * y, "/": x / y if y else 0, "÷": x / y if y else 0}[op]
        claims += 1
        if abs(v - z) > max(0.011, 0.006 * abs(v)):
            wrong += 1
    return claims, wrong


def text_features(request: str, answer: str) -> dict[str, float]:
    """The text features of ``answer`` to ``request`` (names: :data:`TEXT_FEATURES`)."""
    low = answer.lower()
    words = answer.split()
    lines = [ln.strip() for ln in answer.splitlines() if ln.strip()]
    final = final_answer(answer)
    value = _number(final) if final is not None else None
    hedges = sum(low.count(h) for h in HEDGES)
    claims, wrong = _arith(answer)
    numbers = _NUM.findall(answer)
    options = _OPTION.findall(answer)
    stated_at = low.find("answer is")
    return {
        "log_chars": math.log1p(len(answer)),
        "log_words": math.log1p(len(words)),
        "lines": math.log1p(len(lines)),
        "has_final": float(final is not None and final != ""),
        "final_log_chars": math.log1p(len(final or "")),
        "final_is_number": float(value is not None),
        "final_not_integer": float(value is not None and not float(value).is_integer()),
        "final_negative": float(value is not None and value < 0),
        "final_has_latex": float(final is not None and ("\\" in final or "^" in final)),
        "final_in_request": float(bool(final) and final.strip("'\"") in request),
        "hedges": math.log1p(hedges),
        "hedge_rate": hedges / max(1, len(words)) * 100,
        "arith_claims": math.log1p(claims),
        "arith_wrong": float(wrong),
        "arith_wrong_share": wrong / claims if claims else 0.0,
        "numbers": math.log1p(len(numbers)),
        "distinct_number_share": len(set(numbers)) / len(numbers) if numbers else 1.0,
        "runs_on": float(stated_at >= 0 and len(answer) - stated_at > 80),
        "repeated_line_share": 1 - len(set(lines)) / len(lines) if lines else 0.0,
        "option_stated": float(bool(options)),
        "options_named": math.log1p(len(set(re.findall(r"\(([A-J])\)", answer)))),
        **_answer_shape(answer, final, value),
        "option_in_body": _option_in_body(request, answer, options[-1] if options else None),
        **_option_number(request, answer, options[-1] if options else None),
        "request_options": float(len(re.findall(r"^[A-J]\. ", request, flags=re.MULTILINE))),
        "truncated": float(answer.rstrip().endswith(("...", ",")) or (answer.lstrip().startswith("{") and not answer.rstrip().rstrip("`").rstrip().endswith("}"))),
    }


def _option_in_body(request: str, answer: str, letter: str | None) -> float:
    """1 when the chosen option's text (or its first number) appears in the answer before it is stated."""
    if letter is None:
        return 0.0
    m = re.search(rf"^{letter}\. (.+)$", request, flags=re.MULTILINE)
    if not m:
        return 0.0
    option, body = m.group(1).strip().lower(), answer[: answer.lower().rfind("answer is")].lower()
    nums = _NUM.findall(option)
    return float(option in body or (bool(nums) and nums[0] in body))


def _option_number(request: str, answer: str, letter: str | None) -> dict[str, float]:
    """Does the chosen option agree with the number the answer worked out? The last number before "answer is"
    against the chosen option's first number: their relative gap, whether they agree (within 0.5%), and
    whether another option's number lies closer (a pick of the "closest" option); with the share of options
    that hold a number. All zero without lettered options, a chosen letter or numbers."""
    options = {m.group(1): m.group(2) for m in re.finditer(r"^([A-J])\. (.+)$", request, flags=re.MULTILINE)}
    values = {k: _number(n[0]) if (n := _NUM.findall(text)) else None for k, text in options.items()}
    out = {"option_number_known": 0.0, "option_number_gap": 0.0, "option_number_exact": 0.0, "option_other_closer": 0.0,
           "options_numeric": sum(v is not None for v in values.values()) / len(values) if values else 0.0}  # fmt: skip
    chosen = values.get(letter) if letter else None
    stated = answer.lower().rfind("answer is")
    worked = [v for v in map(_number, _NUM.findall(answer[:stated] if stated >= 0 else answer)) if v is not None]
    if chosen is None or not worked:
        return out

    def gap(v: float) -> float:
        return abs(worked[-1] - v) / max(abs(v), 1e-6)

    g = gap(chosen)
    others = [gap(v) for k, v in values.items() if v is not None and k != letter]
    return out | {
        "option_number_known": 1.0,
        "option_number_gap": math.log1p(min(g, 100.0)),
        "option_number_exact": float(g < 0.005),
        "option_other_closer": float(bool(others) and min(others) < g),
    }


def _answer_shape(answer: str, final: str | None, value: float | None) -> dict[str, float]:
    """How the final answer is stated: agrees with the last number worked out, small integer, LaTeX, a literal."""
    body = answer[: answer.rfind(final)] if final and final in answer else answer
    last = _NUM.findall(body.replace('"answer"', ""))
    last_value = _number(last[-1]) if last else None
    literal = 0.0
    if final and len(final) < 2000:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "invalid decimal literal" and the like, on text that is not Python
                ast.literal_eval(final)
            literal = 1.0
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            pass
    return {
        "equals": math.log1p(answer.count("=")),
        "final_matches_last_number": float(value is not None and last_value is not None and abs(value - last_value) < 1e-9),
        "final_small_integer": float(value is not None and float(value).is_integer() and abs(value) < 1000),
        "final_latex_ops": math.log1p(sum((final or "").count(t) for t in ("\\sqrt", "\\frac", "\\pi", "^"))),
        "final_literal": literal,
        "final_container": float(bool(final) and final.lstrip()[:1] in "[{("),
    }


def execution_features(request: str, answer: str) -> dict[str, float]:
    """``exec_verdict``: +1 when the answer's final answer holds for the request's code, -1 when it does not,
    0 when there is nothing to run or it could not tell (:func:`app.verification.execution.execution_verdict`)."""
    return {"exec_verdict": execution_verdict(request, final_answer(answer))}


def logprob_features(logprobs: Sequence[float] | None, tokens: Sequence[str] | None = None) -> dict[str, float] | None:
    """Features of the answer's per-token log-probabilities (names: :data:`LOGPROB_FEATURES`), or None
    without any. ``tokens`` (the tokens' texts) locate the final answer's span: the tokens after the
    last "answer" (else the last 8 tokens)."""
    if not logprobs:
        return None
    lp = np.asarray([max(float(x), -100.0) for x in logprobs], dtype=np.float64)
    q05, q10, q25, q50 = np.quantile(lp, [0.05, 0.10, 0.25, 0.5])
    start = max(0, len(lp) - 8)
    if tokens is not None and len(tokens) == len(lp):
        text, ends = "", []
        for t in tokens:
            text += t
            ends.append(len(text))
        at = text.lower().rfind("answer")
        if at >= 0:
            start = next((i + 1 for i, e in enumerate(ends) if e > at), start)
            start = min(start, len(lp) - 1)
    return {
        "lp_mean": float(lp.mean()),
        "lp_min": float(lp.min()),
        "lp_q05": float(q05),
        "lp_q10": float(q10),
        "lp_q25": float(q25),
        "lp_median": float(q50),
        "lp_final_mean": float(lp[start:].mean()),
        "lp_tokens": math.log1p(len(lp)),
    }


def request_features(request: str) -> dict[str, float]:
    """The request's length and step-count features (the router's, :func:`app.routing.text.features`)."""
    return dict(zip(REQUEST_FEATURES, map(float, _prompt_features(request))))


def kind_features(request: str) -> dict[str, float]:
    """What tells kinds of request apart (the verifier's gate): the request features and its format --
    lettered options, a code block, LaTeX, an assertion to complete, JSON."""
    return request_features(request) | {
        "request_options": float(len(re.findall(r"^[A-J]\. ", request, flags=re.MULTILINE))),
        "request_code_block": float("[PYTHON]" in request or "```" in request or "def " in request),
        "request_latex": math.log1p(request.count("$") + request.count("\\")),
        "request_assert": float("assert " in request),
        "request_json": float(request.lstrip().startswith(("{", "["))),
        "request_math_verb": float(bool(_MATH_VERB.search(request))),
        "request_story": float(bool(_STORY.search(request))),
    }


def code_features(request: str) -> dict[str, float]:
    """How much work the request's code asks for (all zero without code): lines, loops, branches, calls, slices."""
    lines = [ln for ln in request.splitlines() if ln.startswith((" ", "\t", "def ", "class "))]
    code = "\n".join(lines)
    return {
        "code_lines": math.log1p(len(lines)),
        "code_loops": math.log1p(len(re.findall(r"\b(?:for|while)\b", code))),
        "code_branches": math.log1p(len(re.findall(r"\b(?:if|elif|else)\b", code))),
        "code_method_calls": math.log1p(len(re.findall(r"\.\w+\(", code))),
        "code_slices": math.log1p(len(re.findall(r"\[[^\]]*:[^\]]*\]", code))),
        "code_comprehensions": math.log1p(len(re.findall(r"\[[^\]]* for ", code))),
        "code_returns": math.log1p(code.count("return")),
    }


def answer_kind_features(answer: str) -> dict[str, float]:
    """The answer's format: JSON, LaTeX, code words, a quoted final answer (with :data:`TEXT_FEATURES`' own)."""
    final = (final_answer(answer) or "").strip()
    head = answer.lstrip()[:12]
    return {
        "answer_json": float(head.startswith("{") or head.startswith("```json")),
        "answer_latex": math.log1p(answer.count("\\") + answer.count("$")),
        "answer_code_words": math.log1p(len(re.findall(r"\b(?:function|return|list|string|append|loop|index)\b", answer))),
        "answer_quoted_final": float(final[:1] in ("'", '"')),
    }
