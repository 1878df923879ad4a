"""Ladder outcome data: per prompt, one score per model (and each model's answer, where known).

A ladder is calibrated and evaluated on the same prompts answered by every model of it. Two ways in:

* the shared data directory (``../shared/data``): the pair files of one source share their question
  ids, so a ladder is a join on the id (:func:`load_shared_ladder`): ``zeroeval/<source>_<pair>.csv``
  (``gsm8k``, ``math_l5``, ``crux``; ``id``) and ``mmlu_pro/<pair>.csv`` (``question_id``); each pair
  file's ``weak``/``strong`` (and ``weak_answer``/``strong_answer``) columns become the scores (answers)
  of the two models :data:`PAIR_MODELS` names. Ids missing from some file are dropped and reported.
* a file of your own (:func:`load_ladder_file`):

  - JSONL, one object a line: ``{"id": ..., "prompt": ... (or "messages"), "scores": {model: score},
    "answers": {model: text}}`` (``id``, ``answers`` and ``source`` optional);
  - CSV with a ``prompt`` column and one score column per model, named by ``--ladder weak_col,mid_col,
    strong_col``; a ``<col>_answer`` column per model carries its answer (optional); ``id``/``source``
    optional.

Scores are 0/1 correctness or any quality score (bool, number, "true"/"false"). An error names the file,
the line and the field.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.calibration.data import DataError, _as_score, _read_rows, sha256_file
from app.routing.text import Messages, prompt_text

# Pair file name (without .csv and the source prefix) -> (weak model, strong model), short model names.
PAIR_MODELS: dict[str, tuple[str, str]] = {
    "llama31_8b_vs_70b": ("llama-3.1-8b", "llama-3.1-70b"),
    "gpt4omini_vs_gpt4o": ("gpt-4o-mini", "gpt-4o"),
    "qwen2_7b_vs_72b": ("qwen2-7b", "qwen2-72b"),
    "qwen15_7b_vs_72b": ("qwen1.5-7b", "qwen1.5-72b"),
    "mistral7b_vs_mixtral8x7b": ("mistral-7b", "mixtral-8x7b"),
}
# Source -> (folder/prefix of its pair files, id column).
SHARED_SOURCES: dict[str, tuple[str, str]] = {
    "gsm8k": ("zeroeval/gsm8k_", "id"),
    "math_l5": ("zeroeval/math_l5_", "id"),
    "crux": ("zeroeval/crux_", "id"),
    "mmlu_pro": ("mmlu_pro/", "question_id"),
}


@dataclass(frozen=True)
class LadderRow:
    id: str
    prompt: str  # the router's text of the request (app.routing.text.prompt_text)
    scores: dict[str, float]  # model -> score
    answers: dict[str, str] = field(default_factory=dict)  # model -> answer text, where known
    source: str = ""


@dataclass
class LadderData:
    models: list[str]  # the models every row has a score for
    rows: list[LadderRow]
    checksums: dict[str, str] = field(default_factory=dict)  # file -> sha256
    dropped: dict[str, list[str]] = field(default_factory=dict)  # file -> ids missing from it (dropped from the join)
    prompt_mismatch: int = 0  # ids whose prompt text differs between files (the first file's is kept)

    def sources(self) -> list[str]:
        return sorted({r.source for r in self.rows})

    def of_source(self, source: str) -> "LadderData":
        return LadderData(self.models, [r for r in self.rows if r.source == source], self.checksums, self.dropped, self.prompt_mismatch)

    def require(self, models: list[str]) -> None:
        missing = [m for m in models if m not in self.models]
        if missing:
            raise DataError(f"ladder models {missing} have no scores in the data (it has {self.models})")

    def summary(self) -> str:
        miss = "; ".join(f"{Path(f).name}: {len(ids)} ids missing" for f, ids in self.dropped.items() if ids)
        return (
            f"{len(self.rows)} prompts x {len(self.models)} models ({', '.join(self.models)})"
            + (f"; dropped from the join: {miss}" if miss else "")
            + (f"; {self.prompt_mismatch} ids with differing prompt texts (first kept)" if self.prompt_mismatch else "")
        )


def _text(row: dict[str, Any], where: str) -> str:
    if row.get("messages") is not None:
        try:
            return prompt_text(Messages.validate_python(row["messages"]))
        except ValueError:
            raise DataError(f"{where}: invalid 'messages' (a list of {{role, content}} with a user message)") from None
    raw = row.get("prompt")
    if not isinstance(raw, str) or not raw.strip():
        raise DataError(f"{where}: needs a non-empty 'prompt' (or 'messages')")
    return prompt_text(raw)


def join_pair_files(files: dict[str, tuple[Path, str, tuple[str, str]]], source: str) -> LadderData:
    """Join pair files on their id column: ``files`` maps a label to (path, id column, (weak model, strong model)).

    A row is kept iff its id is in every file; the ids each file lacks are reported in ``dropped``."""
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    sums = {}
    for label, (path, id_col, _) in files.items():
        table: dict[str, dict[str, Any]] = {}
        for i, row in _read_rows(path):
            where = f"{path}:{i}"
            if id_col not in row or str(row[id_col]).strip() == "":
                raise DataError(f"{where}: missing id column {id_col!r}")
            key = str(row[id_col]).strip()
            if key in table:
                raise DataError(f"{where}: duplicate id {key!r}")
            for col in ("weak", "strong"):
                if col not in row:
                    raise DataError(f"{where}: missing outcome column {col!r}")
            table[key] = {"row": row, "where": where}
        tables[label] = table
        sums[str(path)] = sha256_file(path)
    all_ids = set().union(*(set(t) for t in tables.values())) if tables else set()
    common = set.intersection(*(set(t) for t in tables.values())) if tables else set()
    dropped = {str(files[label][0]): sorted(all_ids - set(t)) for label, t in tables.items()}
    first = next(iter(tables))
    order = [k for k in tables[first] if k in common]  # the first file's order
    models = [m for _, _, pair in files.values() for m in pair]
    if len(set(models)) != len(models):
        raise DataError(f"{source}: a model appears in two pair files ({models})")
    rows, mismatch = [], 0
    for key in order:
        scores, answers, prompt, differs = {}, {}, None, False
        for label, (_, _, (weak_model, strong_model)) in files.items():
            rec = tables[label][key]
            row, where = rec["row"], rec["where"]
            text = _text(row, where)
            if prompt is None:
                prompt = text
            elif text != prompt:
                differs = True
            scores[weak_model] = _as_score(row["weak"], f"{where}: weak")
            scores[strong_model] = _as_score(row["strong"], f"{where}: strong")
            for col, model in (("weak_answer", weak_model), ("strong_answer", strong_model)):
                if isinstance(row.get(col), str):
                    answers[model] = row[col]
        mismatch += differs
        rows.append(LadderRow(key, prompt, scores, answers, source))
    if not rows:
        raise DataError(f"{source}: no id is in every pair file ({', '.join(str(f[0]) for f in files.values())})")
    return LadderData(models, rows, sums, dropped, mismatch)


def load_shared_ladder(root: str | Path, source: str, models: list[str] | None = None) -> LadderData:
    """One source's pair files under the shared data directory, joined on the question id. ``models``: read only
    the pair files needed for these models (default: every pair file of the source)."""
    if source not in SHARED_SOURCES:
        raise DataError(f"unknown source {source!r} (known: {', '.join(SHARED_SOURCES)})")
    prefix, id_col = SHARED_SOURCES[source]
    files = {}
    for pair, pair_models in PAIR_MODELS.items():
        p = Path(root) / f"{prefix}{pair}.csv"
        if p.is_file() and (models is None or set(pair_models) & set(models)):
            files[pair] = (p, id_col, pair_models)
    if not files:
        raise DataError(f"{root}: no pair files for {source} (expected {prefix}<pair>.csv)")
    data = join_pair_files(files, source)
    if models is not None:
        data.require(models)
    return data


def has_models(root: str | Path, source: str, models: list[str]) -> bool:
    """Whether the shared data directory has pair files of ``source`` scoring every one of ``models``."""
    prefix, _ = SHARED_SOURCES[source]
    present = {m for pair, ms in PAIR_MODELS.items() if (Path(root) / f"{prefix}{pair}.csv").is_file() for m in ms}
    return set(models) <= present


def load_ladder_file(path: str | Path, columns: list[str] | None = None, source: str | None = None) -> LadderData:
    """A JSONL file of ``{"prompt", "scores": {...}, "answers"?: {...}}`` rows, or a CSV with one score column per
    model in ``columns`` (and optional ``<col>_answer`` columns). Every row must score every model."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.suffix == ".csv" and not columns:
        raise DataError(f"{path}: a CSV ladder needs its score columns (--ladder weak_col,mid_col,strong_col)")
    rows: list[LadderRow] = []
    models: list[str] | None = list(columns) if columns else None
    for i, row in _read_rows(path):
        where = f"{path}:{i}"
        text = _text(row, where)
        if path.suffix == ".csv":
            scores, answers = {}, {}
            for col in models:
                if col not in row:
                    raise DataError(f"{where}: missing score column {col!r}")
                if str(row[col]).strip() == "":
                    raise DataError(f"{where}: empty score in column {col!r}")
                scores[col] = _as_score(row[col], f"{where}: {col}")
                if isinstance(row.get(f"{col}_answer"), str) and row[f"{col}_answer"]:
                    answers[col] = row[f"{col}_answer"]
        else:
            raw = row.get("scores")
            if not isinstance(raw, dict) or not raw:
                raise DataError(f"{where}: needs 'scores', an object model -> score")
            if models is None:
                models = list(raw)
            lacking = [m for m in models if m not in raw]
            if lacking:
                raise DataError(f"{where}: 'scores' lacks model(s) {lacking}")
            scores = {m: _as_score(raw[m], f"{where}: scores.{m}") for m in models}
            ans = row.get("answers") or {}
            if not isinstance(ans, dict) or not all(isinstance(v, str) for v in ans.values()):
                raise DataError(f"{where}: 'answers' must be an object model -> answer text")
            answers = {m: v for m, v in ans.items() if m in scores}
        rid = str(row.get("id") if row.get("id") not in (None, "") else i)
        rows.append(LadderRow(rid, text, scores, answers, str(row.get("source") or source or path.stem)))
    if not rows:
        raise DataError(f"{path}: no rows")
    if len(models) < 2:
        raise DataError(f"{path}: a ladder needs at least two models, got {models}")
    return LadderData(models, rows, {str(path): sha256_file(path)})


def load_ladder(paths: list[str], ladder: list[str], sources: list[str] | None = None) -> LadderData:
    """``--data`` for a ladder: shared-layout directories (every source in ``sources``, default all that have the
    ladder's models) and/or ladder files. The CSV columns / JSONL score keys are the ``ladder`` names."""
    parts: list[LadderData] = []
    for p in paths:
        if Path(p).is_dir():
            for s in sources or [s for s in SHARED_SOURCES if has_models(p, s, ladder)]:
                parts.append(load_shared_ladder(p, s, ladder))
        else:
            d = load_ladder_file(p, ladder if Path(p).suffix == ".csv" else None)
            d.require(ladder)
            parts.append(d)
    if not parts:
        raise DataError(f"no source in {paths} has scores for every model of the ladder {ladder}")
    out = LadderData(list(ladder), [], {}, {}, 0)
    for d in parts:
        out.rows += d.rows
        out.checksums.update(d.checksums)
        out.dropped.update(d.dropped)
        out.prompt_mismatch += d.prompt_mismatch
    return out


def write_jsonl(data: LadderData, path: str | Path) -> None:
    """The documented JSONL ladder format (what :func:`load_ladder_file` reads)."""
    with open(path, "w", encoding="utf-8") as f:
        for r in data.rows:
            f.write(json.dumps({"id": r.id, "source": r.source, "prompt": r.prompt, "scores": r.scores, "answers": r.answers}) + "\n")


csv.field_size_limit(1 << 26)
