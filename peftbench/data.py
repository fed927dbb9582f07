"""Task data as `datasets.Dataset`: shipped extracts, local csv/jsonl/parquet files, or a hub dataset."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftbench.errors import UserError
from peftbench.suites import SUITES_DIR, TaskSpec

FORMATS = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
SUBSET_SEED = 1234  # fixed: the default-size subset must not change with the run's seed


@dataclass
class TaskData:
    train: Any  # datasets.Dataset
    eval: Any
    fingerprint: str  # sha256 over the exact rows used, so a data change changes the run id


def load_task_data(task: TaskSpec, scale: str = "default") -> TaskData:
    """Load, validate and (unless scale=full) subsample a task's train and eval splits."""
    splits = _load_splits(task)
    for split_name, dataset in splits.items():
        _check_columns(task, split_name, dataset)
        if len(dataset) == 0:
            raise UserError(f"task '{task.name}': the {split_name} split is empty")
    if scale != "full":
        splits = {name: _subset(ds, task.sizes.get(name)) for name, ds in splits.items()}
    return TaskData(splits["train"], splits["eval"], fingerprint_rows(splits["train"], splits["eval"]))


def _load_splits(task: TaskSpec) -> dict[str, Any]:
    import datasets

    datasets.disable_progress_bars()
    data = task.data
    source = data["source"]
    try:
        if source == "shipped":
            folder = SUITES_DIR / data["path"]
            return {s: _load_file(folder / f"{s}.jsonl", task) for s in ("train", "eval")}
        if source == "local":
            files = data.get("files") or {}
            if set(files) != {"train", "eval"}:
                raise UserError(f"task '{task.name}': data.files needs 'train' and 'eval' paths")
            return {s: _load_file(Path(p).expanduser(), task) for s, p in files.items()}
        splits = data.get("splits") or {"train": "train", "eval": "validation"}
        return {s: datasets.load_dataset(data["id"], data.get("config"), split=hub_split,
                                         revision=data.get("revision"))
                for s, hub_split in splits.items()}
    except (FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError) as exc:
        raise UserError(f"task '{task.name}': cannot load data ({source}): {str(exc).splitlines()[0]}") from None


def _load_file(path: Path, task: TaskSpec) -> Any:
    import datasets

    fmt = FORMATS.get(path.suffix)
    if fmt is None:
        raise UserError(f"task '{task.name}': {path} must be one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise UserError(f"task '{task.name}': data file {path} does not exist")
    if not path.read_text(errors="replace").strip():
        raise UserError(f"task '{task.name}': data file {path} is empty")
    try:
        return datasets.load_dataset(fmt, data_files=str(path), split="train")
    except (datasets.exceptions.DatasetGenerationError, StopIteration) as exc:
        raise UserError(f"task '{task.name}': cannot parse {path}: {exc.__cause__ or exc}") from None


def _check_columns(task: TaskSpec, split: str, dataset: Any) -> None:
    missing = [col for col in task.fields.values() if col not in dataset.column_names]
    if missing:
        raise UserError(f"task '{task.name}': {split} data lacks declared column(s) {missing} "
                        f"(has: {', '.join(dataset.column_names)})")


def _subset(dataset: Any, size: int | None) -> Any:
    if not size or size >= len(dataset):
        return dataset
    return dataset.shuffle(seed=SUBSET_SEED).select(range(size)).flatten_indices()


def fingerprint_rows(*datasets_: Any) -> str:
    digest = hashlib.sha256()
    for dataset in datasets_:
        for row in dataset:
            digest.update(json.dumps(row, sort_keys=True, default=str).encode())
        digest.update(b"\x00")
    return digest.hexdigest()[:16]
