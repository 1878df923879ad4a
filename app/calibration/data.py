"""Labelled prompts: the one shape that calibration and evaluation read.

A row says how well a weak and a strong model answered a prompt (``weak`` and
``strong``, 0/1 correctness or any quality score, e.g. a judge's 1-10) and/or carries an
explicit ``label`` (1 = needs tier 2 / "complex", 0 = "simple"). The training
label, where outcomes exist, is the one the routing metric rewards:
``needs_strong = weak wrong and strong right`` (``weak < strong``).

Readers:
* a directory laid out like ``../shared/data`` (RouteLLM MMLU/GSM8K CSVs and
  Arena-Hard questions), see :func:`load_shared_dir`;
* any ``.jsonl`` or ``.csv`` file with a ``prompt`` (or ``messages``) field and
  either ``weak``/``strong`` fields (names configurable) or a ``label`` field.
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.files import iter_jsonl
from app.routing.text import Messages, prompt_text

# Known model-outcome column pairs (weak, strong), tried in order when the
# caller names none.
KNOWN_PAIRS: tuple[tuple[str, str], ...] = (
    ("weak", "strong"),
    ("weak_correct", "strong_correct"),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"),
    ("6b_finetuning", "175b_finetuning"),
)
SIMPLE_LABELS = {"simple", "0", "false", "tier1", "weak"}
COMPLEX_LABELS = {"complex", "1", "true", "tier2", "strong"}

csv.field_size_limit(1 << 26)


class DataError(ValueError):
    """A labelled-data file that cannot be read; the message names file and line."""


@dataclass(frozen=True)
class Example:
    text: str  # what the router scores (see app.routing.text.prompt_text)
    source: str  # benchmark / file the row came from, e.g. "mmlu"
    group: str = ""  # finer grouping, e.g. the MMLU subject
    weak: float | None = None
    strong: float | None = None
    label: int | None = None  # explicit simple(0)/complex(1), when given

    @property
    def has_outcomes(self) -> bool:
        return self.weak is not None and self.strong is not None

    @property
    def target(self) -> int:
        """Training label: explicit label, else needs_strong."""
        if self.label is not None:
            return self.label
        assert self.weak is not None and self.strong is not None
        return int(self.weak < self.strong)


@dataclass
class Dataset:
    examples: list[Example]
    checksums: dict[str, str] = field(default_factory=dict)  # file -> sha256

    def __len__(self) -> int:
        return len(self.examples)

    def sources(self) -> list[str]:
        return sorted({e.source for e in self.examples})

    def extend(self, other: "Dataset") -> "Dataset":
        return Dataset(self.examples + other.examples, {**self.checksums, **other.checksums})


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _as_score(value: Any, where: str) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, dict) and "is_correct" in value:  # grade-school-math layout
        return _as_score(value["is_correct"], where)
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise DataError(f"{where}: outcome {value!r} is not a finite number")
        return float(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("true", "1", "yes"):
            return 1.0
        if v in ("false", "0", "no"):
            return 0.0
        try:
            return _as_score(float(v), where)
        except ValueError:
            pass
    raise DataError(f"{where}: cannot read outcome {value!r} as a bool or a number")


def _as_label(value: Any, where: str) -> int:
    v = str(value).strip().lower()
    if v in SIMPLE_LABELS:
        return 0
    if v in COMPLEX_LABELS:
        return 1
    raise DataError(f"{where}: label {value!r} is not one of simple/complex (or 0/1)")


def _row_to_example(
    row: dict[str, Any], where: str, source: str, group: str, pair: tuple[str, str] | None
) -> Example:
    if "messages" in row and row["messages"] is not None:
        text = prompt_text(Messages.validate_python(row["messages"]))
    else:
        raw = row.get("prompt", row.get("question"))
        if not isinstance(raw, str) or not raw.strip():
            raise DataError(f"{where}: needs a non-empty 'prompt' (or 'messages')")
        text = prompt_text(raw)
    weak = strong = None
    cols = [pair] if pair else [p for p in KNOWN_PAIRS if p[0] in row and p[1] in row][:1]
    if cols:
        w, s = cols[0]
        if w not in row or s not in row:
            raise DataError(f"{where}: missing outcome column {w!r} or {s!r}")
        weak, strong = _as_score(row[w], where), _as_score(row[s], where)
    label = _as_label(row["label"], where) if row.get("label") not in (None, "") else None
    if weak is None and label is None:
        raise DataError(
            f"{where}: no outcomes and no label (expected 'label', or weak/strong columns such as "
            f"{', '.join('/'.join(p) for p in KNOWN_PAIRS)})"
        )
    group = str(row.get("category") or row.get("group") or group)
    if isinstance(row.get("source"), str) and row["source"].strip():  # a row naming its source (shadow outcomes do)
        source = row["source"].strip()
    return Example(text=text, source=source, group=group, weak=weak, strong=strong, label=label)


def _read_rows(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            for i, row in enumerate(csv.DictReader(f), start=2):  # line 1 is the header
                yield i, row
    elif path.suffix in (".jsonl", ".json"):
        for i, row, err in iter_jsonl(path):
            if err:
                raise DataError(f"{path}:{i}: {err}")
            if not isinstance(row, dict):
                raise DataError(f"{path}:{i}: expected a JSON object")
            yield i, row
    else:
        raise DataError(f"{path}: unsupported file type (use .jsonl or .csv)")


def load_file(
    path: str | Path,
    source: str | None = None,
    group: str = "",
    pair: tuple[str, str] | None = None,
    label: int | None = None,
) -> Dataset:
    """Read one JSONL/CSV file. ``label`` forces one class on every row (one-sided data)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    source = source or path.stem
    out = []
    for i, row in _read_rows(path):
        if label is not None:
            row = {**row, "label": label}
        out.append(_row_to_example(row, f"{path}:{i}", source, group, pair))
    if not out:
        raise DataError(f"{path}: no rows")
    return Dataset(out, {str(path): sha256_file(path)})


# The permissive outcome pairs of ``mmlu_pro/`` and ``zeroeval/`` (see SOURCES.md sections 5-6): the file
# name's source prefix -> the kind of traffic its rows are (the source is "<kind>:<pair>", so a second pair of
# the same questions joins its kind, as gsm8k:gpt3-6b-vs-175b does).
PAIR_SOURCES: tuple[tuple[str, str], ...] = (
    ("mmlu_pro/", "mmlu-pro"),
    ("zeroeval/gsm8k_", "gsm8k"),
    ("zeroeval/math_l5_", "math-l5"),
    ("zeroeval/crux_", "crux"),
)
LLAMA31 = "llama31_8b_vs_70b"  # the product's pair: Llama-3.1 8B (tier 1) / 70B (tier 2)
PAIR_MODELS = {LLAMA31: ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-70B-Instruct")}


def pair_source(kind: str, pair: str) -> str:
    """The source name of a pair file: ``crux`` + ``llama31_8b_vs_70b`` -> ``crux:llama31-8b-vs-70b``."""
    return f"{kind}:{pair.replace('_', '-')}"


def load_shared_dir(
    root: str | Path, include_arena: bool = True, pairs: tuple[str, ...] = (LLAMA31,), arena_bench: tuple[str, ...] = ()
) -> Dataset:
    """The calibration data directory (see its SOURCES.md).

    * ``routellm/mmlu/responses/mmlu_<subject>.csv`` -> source "mmlu", group = subject
    * ``routellm/gsm8k/gsm8k_responses.csv`` -> source "gsm8k"
    * ``arena-hard-auto/.../question.jsonl`` -> source "arena-hard", label complex
      (one-sided: every prompt was selected as hard)

    * ``grade-school-math/example_model_solutions.jsonl`` -> source
      "gsm8k:gpt3-6b-vs-175b": the same questions with GPT-3 6B / 175B outcomes
      (a second model pair of the same kind, see app.calibration.prepared)
    * for each of ``pairs`` (file-name pair, e.g. ``llama31_8b_vs_70b``, the default): ``mmlu_pro/<pair>.csv``
      and ``zeroeval/{gsm8k,math_l5,crux}_<pair>.csv`` -> sources "mmlu-pro:<pair>", "gsm8k:<pair>",
      "math-l5:<pair>", "crux:<pair>" (group = the MMLU-Pro category); ``pairs=()`` reads only the sources above
    * for each of ``arena_bench`` (e.g. ``gpt35_vs_gpt4``; none by default): ``arena_bench_v1/<pair>.csv`` ->
      source "arena-bench:<pair>" (GPT-4 judge scores 1-10 of chat answers)

    AlpacaEval (``alpaca_eval/``, CC BY-NC) is never read here.
    """
    root = Path(root)
    ds = Dataset([])
    mmlu = sorted((root / "routellm/mmlu/responses").glob("mmlu_*.csv"))
    for p in mmlu:
        ds = ds.extend(load_file(p, source="mmlu", group=p.stem.removeprefix("mmlu_")))
    gsm = root / "routellm/gsm8k/gsm8k_responses.csv"
    if gsm.is_file():
        ds = ds.extend(load_file(gsm, source="gsm8k"))
    gpt3 = root / "grade-school-math/example_model_solutions.jsonl"
    if gpt3.is_file():
        ds = ds.extend(load_file(gpt3, source="gsm8k:gpt3-6b-vs-175b"))
    for pair in pairs:
        for prefix, kind in PAIR_SOURCES:
            p = root / f"{prefix}{pair}.csv"
            if p.is_file():
                ds = ds.extend(load_file(p, source=pair_source(kind, pair), pair=("weak", "strong")))
    for pair in arena_bench:
        p = root / f"arena_bench_v1/{pair}.csv"
        if p.is_file():
            ds = ds.extend(load_file(p, source=pair_source("arena-bench", pair), group="", pair=("weak", "strong")))
    arena = root / "arena-hard-auto/data/arena-hard-v0.1/question.jsonl"
    if include_arena and arena.is_file():
        ds = ds.extend(load_file(arena, source="arena-hard", label=1))
    if not ds.examples:
        raise DataError(f"{root}: no calibration data found (expected routellm/, arena-hard-auto/)")
    return ds


def load(path: str | Path, pair: tuple[str, str] | None = None) -> Dataset:
    """A shared-layout directory or a single JSONL/CSV file."""
    p = Path(path)
    return load_shared_dir(p) if p.is_dir() else load_file(p, pair=pair)
