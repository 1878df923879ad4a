"""Outcome rows that carry tier 1's answer: what the verifier is fitted and evaluated on.

A row is a request (``prompt`` or ``messages``), the small model's answer (``answer``, or
``weak_answer`` as in ``../shared/data``), the two models' outcomes (``weak``/``strong``) and,
optionally, the answer's per-token log-probabilities (``answer_logprobs``, a list of floats) and
tokens (``answer_tokens``) -- what ``tierroute label`` records. The training label is the one the
routing metric rewards: ``needs_strong = weak < strong``.

Readers: any ``.jsonl``/``.csv`` file (:func:`load_answer_file`), and the shared data directory's
outcomes for the Llama-3.1 8B/70B pair (:func:`load_shared_answers`: MMLU-Pro and ZeroEval's GSM8K,
MATH level 5 and CRUXEval; all permissively licensed, answers under the Llama 3.1 licence).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.calibration.data import DataError, _as_score, _read_rows, sha256_file
from app.verification.rows import RowError, answer_of
from app.verification.verifier import Answer

LLAMA31_PAIR = ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-70B-Instruct")
SHARED_FILES = {  # source -> file under the shared data directory (the Llama-3.1 8B/70B pair)
    "mmlu_pro": "mmlu_pro/llama31_8b_vs_70b.csv",
    "gsm8k": "zeroeval/gsm8k_llama31_8b_vs_70b.csv",
    "math_l5": "zeroeval/math_l5_llama31_8b_vs_70b.csv",
    "crux": "zeroeval/crux_llama31_8b_vs_70b.csv",
}


@dataclass(frozen=True)
class AnswerRow:
    answer: Answer  # the request (routing text), tier 1's answer and its log-probabilities
    source: str
    weak: float
    strong: float

    @property
    def needs_strong(self) -> int:
        return int(self.weak < self.strong)


def load_answer_file(path: str | Path, source: str | None = None) -> tuple[list[AnswerRow], dict[str, str]]:
    """Rows of one JSONL/CSV file with answers and outcomes; (rows, {path: sha256})."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    out = []
    for i, row in _read_rows(path):
        where = f"{path}:{i}"
        if "weak" not in row or "strong" not in row:
            raise DataError(f"{where}: needs 'weak' and 'strong' outcomes")
        src = str(row.get("source") or source or path.stem)
        try:
            answer = answer_of(row, where)
        except RowError as e:
            raise DataError(str(e)) from None
        out.append(AnswerRow(answer, src, _as_score(row["weak"], where), _as_score(row["strong"], where)))
    if not out:
        raise DataError(f"{path}: no rows")
    return out, {str(path): sha256_file(path)}


def load_shared_answers(root: str | Path) -> tuple[list[AnswerRow], dict[str, str]]:
    """The Llama-3.1 8B/70B answer rows of the shared data directory (the sources in :data:`SHARED_FILES`)."""
    rows, sums = [], {}
    for source, rel in SHARED_FILES.items():
        p = Path(root) / rel
        if p.is_file():
            r, s = load_answer_file(p, source)
            rows += r
            sums.update(s)
    if not rows:
        raise DataError(f"{root}: no answer rows found (expected {', '.join(SHARED_FILES.values())})")
    return rows, sums
