"""What the user asked about, as the same descriptor numbers the benchmarked tasks have."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftbench.errors import UserError, shown
from peftbench.models.configs import canonical_model
from peftbench.paths import check_input_dir, is_dir, is_file
from peftbench.recommend.evidence import Run
from peftbench.validation import check_recommend_task
from peftbench.vocabulary import KIND_ALIASES

DEFAULT_SEQ_LEN = 512  # the estimator's default, used when nothing says how long the inputs are


@dataclass
class TaskQuery:
    label: str
    kind: str
    train_examples: float | None = None
    mean_input_tokens: float | None = None
    mean_target_tokens: float | None = None
    p90_input_tokens: float | None = None
    num_labels: int = 2
    task_name: str | None = None  # set when the query is a benchmarked task
    notes: list[str] = field(default_factory=list)
    fine_kind: str = ""  # summarization / translation where the user said so (the corpus tells them apart)

    def seq_len(self, override: int | None) -> int:
        if override:
            return override
        if self.p90_input_tokens:
            # The long batch must fit, not the average one: p90 (or max) input length plus the target.
            tokens = self.p90_input_tokens + (self.mean_target_tokens or 0)
            padded = max(64, 64 * math.ceil(tokens / 64))  # padded batches: round up as the collator would
            self.notes.append(f"memory at {padded} tokens per example: the p90/max input length "
                              f"{self.p90_input_tokens:.0f} + target, padded (set --seq-len to override)")
            return padded
        self.notes.append(f"input length unknown: costs assume {DEFAULT_SEQ_LEN} tokens (set --seq-len)")
        return DEFAULT_SEQ_LEN


@dataclass(frozen=True)
class Limits:
    """The numbers a request may carry; every one is checked before any evidence is read."""

    top: int = 5
    batch_size: int = 8
    epochs: float = 3.0
    max_hours: float | None = None
    max_adapter_mb: float | None = None
    train_examples: int | None = None
    seq_len: int | None = None

    def validate(self) -> None:
        from peftbench.validation import number

        for flag, value, high in (("--top", self.top, 10_000), ("--batch-size", self.batch_size, 1 << 20),
                                  ("--train-examples", self.train_examples, 10**12),
                                  ("--seq-len", self.seq_len, 1 << 24)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high):
                raise UserError(f"{flag} must be an integer from 1 to {high}, got {shown(value)}")
        number(self.epochs, "--epochs", low=0.0, low_open=True, high=1e6)
        for flag, limit in (("--max-hours", self.max_hours), ("--max-adapter-mb", self.max_adapter_mb)):
            if limit is not None:
                number(limit, flag, low=0.0, low_open=True, high=1e12)


def resolve_task(task: str, runs: list[Run], data: Path | None = None, model: str | None = None) -> TaskQuery:
    check_recommend_task(task)
    benchmarked = "/" in task and task.lower() not in KIND_ALIASES
    query = _benchmarked(task, runs) if benchmarked else _kind(task.lower(), runs)
    if data is not None:
        _profile_data(query, data, model)
    return query


def _kind(alias: str, runs: list[Run]) -> TaskQuery:
    kind = KIND_ALIASES[alias]
    # The benchmark's tiny CPU tasks say nothing about the size of the user's: unknown stays unknown (the
    # quality model then weighs evidence of every data size alike), and the notes say how to tell it.
    query = TaskQuery(label=alias, kind=kind, fine_kind=alias.replace("-", "_") if kind != "generation" else alias)
    query.notes.append("training-set size unknown: pass --train-examples N or --data FILE (evidence of every data "
                       "size counts alike, and time per epoch cannot be given)")
    return query


def _benchmarked(name: str, runs: list[Run]) -> TaskQuery:
    from peftbench.suites import load_suite

    suite_name, _, task_name = name.partition("/")
    spec = load_suite(suite_name).task(task_name)
    mine = [r for r in runs if r.suite == suite_name and r.task == task_name]
    query = TaskQuery(label=name, kind=spec.kind, task_name=task_name, num_labels=len(spec.labels or ()) or 2,
                      fine_kind=suite_name if suite_name in ("summarization", "translation") else spec.kind)
    # Costs at the task's max_length (inputs are truncated there, so a padded long batch is that long).
    query.p90_input_tokens = spec.max_length
    if mine:
        query.train_examples = mine[0].train_examples
        query.mean_input_tokens = mine[0].mean_input_tokens
        query.mean_target_tokens = mine[0].mean_target_tokens
    else:
        query.train_examples = spec.sizes.get("train")
        query.notes.append(f"{name} has no runs yet: size from the suite file, length from its max_length")
    return query


def apply_overrides(query: TaskQuery, train_examples: int | None, seq_len: int | None) -> None:
    if train_examples is not None:
        if train_examples < 1:
            raise UserError(f"--train-examples must be positive, got {train_examples}")
        query.train_examples = train_examples
        query.notes = [n for n in query.notes if "size unknown" not in n and "no runs yet" not in n]
        query.notes.append(f"training-set size {train_examples:,} examples (--train-examples)")
    if seq_len is not None and seq_len < 1:
        raise UserError(f"--seq-len must be positive, got {seq_len}")
    if seq_len is not None:
        query.notes = [n for n in query.notes if "input length unknown" not in n]


def _profile_data(query: TaskQuery, path: Path, model: str | None) -> None:
    """Describe the user's file exactly as the suites describe theirs (`peftbench.descriptors.describe`), read
    as `run` reads a task's file (`peftbench.data.load_data_file`: JSON nesting bounded before parsing, CSV
    cells in the columns read kept as the text written)."""
    from peftbench.data import FORMATS, load_data_file
    from peftbench.descriptors import describe
    from peftbench.suites import KIND_FIELDS, TaskSpec

    path = Path(path)
    if path.suffix not in FORMATS:
        raise UserError(f"--data {path}: must be one of {', '.join(FORMATS)} (hub datasets need network access)")
    if not is_file(path):
        raise UserError(f"--data {path}: no such file")
    import datasets

    datasets.disable_progress_bars()
    fields = {f: f for f in KIND_FIELDS[query.kind]}
    train = load_data_file(path, fields, f"--data {path}")
    missing = [f for f in fields if f not in train.column_names]
    if missing:
        raise UserError(f"--data {path}: a {query.kind} dataset needs columns {list(fields)}; missing {missing} "
                        f"(has: {', '.join(train.column_names)})")
    spec = TaskSpec(name=Path(path).stem, kind=query.kind, data={}, fields=fields, model=model or "", sizes={})
    desc = describe(spec, train, train, _tokenizer(model, query))
    query.train_examples, query.mean_input_tokens = desc["train_examples"], desc["mean_input_tokens"]
    query.p90_input_tokens, query.mean_target_tokens = desc["p90_input_tokens"], desc.get("mean_output_tokens", 0)
    query.num_labels = int(desc.get("num_labels", query.num_labels))
    kept = [n for n in query.notes if n.startswith("token counts")]
    query.notes = kept + [f"profiled {path}: {desc['train_examples']} examples, mean {desc['mean_input_tokens']:.0f} / "
                   f"p90 {desc['p90_input_tokens']} input tokens"]


def _tokenizer(model: str | None, query: TaskQuery) -> Any:
    """The model's own tokenizer when it is on disk; else SmolLM2's, shipped, as a proxy
    (`peftbench.models.proxy_tokenizer`: whitespace words undercount BPE tokens by about a third on English
    prose, and memory grows with the count); else whitespace words. The notes say which."""
    from peftbench.models.catalogue import CATALOGUE
    from peftbench.models.proxy_tokenizer import PROXY_NAME, proxy_tokenizer

    own = model if model in CATALOGUE or (model and is_dir(model)) else None
    loaders: list[tuple[str, Callable[[], Any]]] = [(own, lambda: _load_tokenizer(own))] if own else []
    for name, load in loaders + [(PROXY_NAME, proxy_tokenizer)]:
        try:
            tokenizer = load()
        except Exception:  # noqa: BLE001 - any failure falls to the next counter, which the notes disclose
            continue
        if name != own:
            query.notes.append(f"token counts from {name}'s tokenizer, a proxy ({model or 'the model'}'s own is "
                               "not on this machine)")
        return tokenizer
    query.notes.append("token counts are whitespace words (no tokenizer on this machine; BPE counts run about a "
                       "third higher)")
    return lambda texts, add_special_tokens=False: {"input_ids": [t.split() for t in texts]}


@functools.lru_cache(maxsize=4)
def _load_tokenizer(name: str) -> Any:
    """Cached: a GGUF-packaged tokenizer takes seconds to rebuild, and one process may profile several files."""
    from peftbench.models.loading import tokenizer_for

    return tokenizer_for(name)


def check_budget(tuning_runs: int, value_margin: float) -> None:
    if isinstance(tuning_runs, bool) or not isinstance(tuning_runs, int) or not 1 <= tuning_runs <= 1000:
        raise UserError(f"--tuning-runs must be an integer from 1 to 1000, got {tuning_runs!r}")
    if not isinstance(value_margin, (int, float)) or not 0 <= value_margin <= 100 or value_margin != value_margin:
        raise UserError(f"--value-margin must be a number of points from 0 to 100, got {value_margin!r}")


def check_flags(*, task: str, gpu: str | None, hardware: str | None, model: str | None,
                 mixed_precision: str | None, results: Path | None) -> str | None:
    """Bad input is refused before any evidence is read or any estimate traced, and before torch or
    transformers is imported: a mistyped name costs well under a second. Returns the model as the estimator
    names it (a preset's hub id becomes the preset's name, so both spellings get the same answer)."""
    if mixed_precision not in (None, "bf16", "fp16"):
        raise UserError(f"--mixed-precision must be bf16 or fp16, got {mixed_precision!r}")
    check_input_dir(results, "--results")
    for flag, value in (("--task", task), ("--gpu", gpu), ("--hardware", hardware), ("--model", model)):
        if value is not None and not value.strip():
            raise UserError(f"{flag} needs a value (see peftbench recommend --help)")
    check_recommend_task(task)
    return None if model is None else canonical_model(model)
