"""The published-evidence corpus: cited quality figures from papers and repositories, one CSV per source.

Each `results/published/<source_id>.csv` follows one schema (see `results/published/README.md`); this module
loads the files into typed rows and refuses any row that breaks the schema, naming the file, line and field,
so that a transcription slip fails loudly instead of skewing the recommender. It imports only the standard
library: the CLI and the recommender read the corpus without loading torch.

The peft repository's `method_comparison/` results are deliberately not in the corpus: they are the held-out
test of the estimator and the recommender.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal, overload

from peftbench.method_declarations import METHOD_NAMES
from peftbench.paths import published_dir  # defined with the other shipped folders; readers import it from here
from peftbench.vocabulary import ARCHITECTURES

COLUMNS: tuple[str, ...] = (
    "source_id", "citation", "locator", "model", "total_params", "architecture", "task", "task_kind", "domain",
    "train_examples", "training_length", "method_published", "method", "hyperparameters", "trainable_params",
    "metric", "score", "std", "seeds", "full_ft_score", "reference_method", "note",
)

METHODS: frozenset[str] = frozenset(METHOD_NAMES)
# Wider than the task kinds a suite can run: papers also report summarization and translation.
PUBLISHED_TASK_KINDS: tuple[str, ...] = ("classification", "multiple_choice", "summarization", "translation",
                                         "generation")
REFERENCE_METHODS: frozenset[str] = frozenset({"full", "lora"})

# The data-size boundary the summary reports: at or below it counts as small-data evidence.
SMALL_DATA_MAX = 1000

_SOURCE_ID = re.compile(r"[a-z0-9_]+")
_DOMAIN = re.compile(r"[a-z0-9_]+")
# Lowercase metric names; rougeL/rougeLsum keep the capital the rouge-score package gives them.
_METRIC = re.compile(r"[a-z0-9_@.\-]+|rougeL|rougeLsum")
_REQUIRED_TEXT = ("citation", "locator", "model", "task", "domain", "method_published", "metric")


class CorpusError(ValueError):
    """A corpus file or row that breaks the schema; the message names file, line and field."""


@dataclass(frozen=True)
class PublishedRow:
    """One published figure: a (source, model, task, method configuration, metric) score, with its citation."""

    source_id: str
    citation: str
    locator: str
    model: str
    total_params: int | None  # None where the source does not say which size was used
    architecture: str
    task: str
    task_kind: str
    domain: str
    train_examples: int | None
    training_length: str | None
    method_published: str
    method: str | None  # None: peftbench has no such method (the row is kept as context)
    hyperparameters: dict[str, Any]
    trainable_params: int | None
    metric: str
    score: float
    std: float | None
    seeds: int | None
    full_ft_score: float | None
    reference_method: str | None  # "full", or "lora" when the source has no full FT and LoRA stands in
    note: str | None
    file: str = ""  # where the row was read, for messages
    line: int = 0

    def cite(self) -> str:
        return f"{self.citation}, {self.locator}"


def _fail(path: Path | str, line: int, field: str, message: str) -> CorpusError:
    return CorpusError(f"{Path(path).name}:{line}: field '{field}': {message}")


def _int(raw: str, path: Path | str, line: int, field: str, *, required: bool, minimum: int = 0) -> int | None:
    if raw == "":
        if required:
            raise _fail(path, line, field, "is required")
        return None
    # Digits only: a figure written as 1.5e9 or 0.3M was converted by hand and must say its exact integer.
    if not raw.isdigit():
        raise _fail(path, line, field, f"must be a non-negative integer, got {raw!r}")
    value = int(raw)
    if value < minimum:
        raise _fail(path, line, field, f"must be at least {minimum}, got {value}")
    return value


# Overloaded so that a required field reads as never None.
@overload
def _float(raw: str, path: Path | str, line: int, field: str, *, required: Literal[True]) -> float: ...
@overload
def _float(raw: str, path: Path | str, line: int, field: str, *, required: bool) -> float | None: ...
def _float(raw: str, path: Path | str, line: int, field: str, *, required: bool) -> float | None:
    if raw == "":
        if required:
            raise _fail(path, line, field, "is required")
        return None
    try:
        value = float(raw)
    except ValueError:
        raise _fail(path, line, field, f"must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise _fail(path, line, field, f"must be finite, got {raw!r}")
    return value


# Overloaded so that a required field reads as never None.
@overload
def _enum(raw: str, allowed: Iterable[str], path: Path | str, line: int, field: str, *,
          required: Literal[True]) -> str: ...
@overload
def _enum(raw: str, allowed: Iterable[str], path: Path | str, line: int, field: str, *,
          required: bool) -> str | None: ...
def _enum(raw: str, allowed: Iterable[str], path: Path | str, line: int, field: str, *, required: bool) -> str | None:
    if raw == "" and not required:
        return None
    if raw not in allowed:
        raise _fail(path, line, field, f"{raw!r} is not one of {', '.join(sorted(allowed))}")
    return raw


def validate_row(raw: Mapping[str, str | None], path: Path | str, line: int) -> PublishedRow:
    """Parse one CSV record into a PublishedRow, or raise CorpusError naming file, line and field."""
    missing = [c for c in COLUMNS if c not in raw]
    if missing:
        raise _fail(path, line, missing[0], "column missing")
    v = {c: (raw[c] or "").strip() for c in COLUMNS}
    hyper = _text_fields(v, path, line)
    row = PublishedRow(
        source_id=v["source_id"], citation=v["citation"], locator=v["locator"], model=v["model"],
        total_params=_int(v["total_params"], path, line, "total_params", required=False, minimum=1),
        architecture=_enum(v["architecture"], ARCHITECTURES, path, line, "architecture", required=True),
        task=v["task"],
        task_kind=_enum(v["task_kind"], PUBLISHED_TASK_KINDS, path, line, "task_kind", required=True),
        domain=v["domain"],
        train_examples=_int(v["train_examples"], path, line, "train_examples", required=False),
        training_length=v["training_length"] or None,
        method_published=v["method_published"],
        method=_enum(v["method"], METHODS, path, line, "method", required=False),
        hyperparameters=hyper,
        trainable_params=_int(v["trainable_params"], path, line, "trainable_params", required=False),
        metric=v["metric"],
        score=_float(v["score"], path, line, "score", required=True),
        std=_float(v["std"], path, line, "std", required=False),
        seeds=_int(v["seeds"], path, line, "seeds", required=False, minimum=1),
        full_ft_score=_float(v["full_ft_score"], path, line, "full_ft_score", required=False),
        reference_method=_enum(v["reference_method"], REFERENCE_METHODS, path, line, "reference_method",
                               required=False),
        note=v["note"] or None, file=Path(path).name, line=line,
    )
    _cross_fields(row, path, line)
    return row


def _text_fields(v: dict[str, str], path: Path | str, line: int) -> dict:
    """The free-text fields' rules; returns the parsed hyper-parameters."""
    stem = Path(path).stem
    if not _SOURCE_ID.fullmatch(v["source_id"]):
        raise _fail(path, line, "source_id", f"must be lowercase [a-z0-9_]+, got {v['source_id']!r}")
    if v["source_id"] != stem:
        raise _fail(path, line, "source_id", f"{v['source_id']!r} does not match the file stem {stem!r}")
    for field in _REQUIRED_TEXT:
        if not v[field]:
            raise _fail(path, line, field, "must not be empty")
    if not _DOMAIN.fullmatch(v["domain"]):
        raise _fail(path, line, "domain", f"must be a lowercase word such as 'general', got {v['domain']!r}")
    if not _METRIC.fullmatch(v["metric"]):
        raise _fail(path, line, "metric", f"must be a lowercase metric name, got {v['metric']!r}")
    try:
        hyper = json.loads(v["hyperparameters"]) if v["hyperparameters"] else None
    except json.JSONDecodeError as exc:
        raise _fail(path, line, "hyperparameters", f"is not valid JSON ({exc.msg})") from None
    if not isinstance(hyper, dict):
        raise _fail(path, line, "hyperparameters", "must be a JSON object ({} when the source gives none)")
    return hyper


def _cross_fields(row: PublishedRow, path: Path | str, line: int) -> None:
    """Cross-field rules: a reference score means nothing without saying what it is, and vice versa."""
    if row.full_ft_score is not None and row.reference_method is None:
        raise _fail(path, line, "reference_method", "must be 'full' or 'lora' when full_ft_score is set")
    if row.full_ft_score is None and row.reference_method is not None:
        raise _fail(path, line, "full_ft_score", f"is empty but reference_method is {row.reference_method!r}")
    if row.std is not None and row.std < 0:
        raise _fail(path, line, "std", f"must not be negative, got {row.std}")
    if row.method == "full" and (row.reference_method != "full" or row.full_ft_score != row.score):
        raise _fail(path, line, "full_ft_score", "a full fine-tuning row must carry its own score with "
                                                 "reference_method 'full'")
    if (row.trainable_params is not None and row.total_params is not None
            and row.trainable_params > row.total_params * 1.01 + 1):
        # 1% slack: sources round both counts (e.g. 175,255.8M trainable for "175B").
        raise _fail(path, line, "trainable_params", f"{row.trainable_params} exceeds total_params {row.total_params}")


def load_source(path: Path) -> list[PublishedRow]:
    """Read one source file; the header must be exactly COLUMNS, in order."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = tuple(reader.fieldnames or ())
        if header != COLUMNS:
            extra = [c for c in header if c not in COLUMNS]
            missing = [c for c in COLUMNS if c not in header]
            detail = (f"missing {missing}" if missing else f"unknown {extra}" if extra
                      else "columns out of order")
            raise CorpusError(f"{path.name}:1: header does not match the schema ({detail})")
        rows = []
        for record in reader:
            if None in record:  # more cells than columns
                raise _fail(path, reader.line_num, "note", "row has more cells than the header")
            rows.append(validate_row(record, path, reader.line_num))
    if not rows:
        raise CorpusError(f"{path.name}: no rows")
    return rows


@cache
def corpus_digest() -> str:
    """The shipped corpus files' names and bytes, as 16 hex digits: what every cache of something derived from
    the corpus (its points, sweeps, forgetting gaps) is keyed by. Once per process: the files are package data,
    and a recommendation reads three such caches."""
    digest = hashlib.sha256()
    for path in sorted(published_dir().glob("*.csv")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def load_corpus(directory: Path | None = None) -> list[PublishedRow]:
    """Every row of every `*.csv` in `directory` (default: published_dir()), sorted by file name."""
    folder = directory if directory is not None else published_dir()
    if not folder.is_dir():
        raise CorpusError(f"no published-evidence folder at {folder}")
    rows: list[PublishedRow] = []
    for path in sorted(folder.glob("*.csv")):
        rows.extend(load_source(path))
    return rows


def relative_quality(row: PublishedRow) -> float | None:
    """score / full_ft_score (relative to full FT, or to LoRA when reference_method is 'lora'); None if unknown."""
    if row.full_ft_score is None or row.full_ft_score == 0:
        return None
    return row.score / row.full_ft_score


def summary(rows: Iterable[PublishedRow]) -> dict[str, Any]:
    """Counts describing the corpus' breadth: sources, rows, methods, model sizes, task kinds, data sizes."""
    rows = list(rows)
    sizes = [r.total_params for r in rows if r.total_params is not None]
    return {
        "rows": len(rows),
        "sources": len({r.source_id for r in rows}),
        "methods": sorted({r.method for r in rows if r.method}),
        "rows_without_method": sum(1 for r in rows if not r.method),
        "min_total_params": min(sizes) if sizes else None,
        "max_total_params": max(sizes) if sizes else None,
        "task_kinds": sorted({r.task_kind for r in rows}, key=PUBLISHED_TASK_KINDS.index),
        "rows_small_data": sum(1 for r in rows if r.train_examples is not None and r.train_examples <= SMALL_DATA_MAX),
        "rows_large_data": sum(1 for r in rows if r.train_examples is not None and r.train_examples > SMALL_DATA_MAX),
        "rows_unknown_data": sum(1 for r in rows if r.train_examples is None),
    }
