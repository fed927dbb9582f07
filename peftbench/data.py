"""Task data as `datasets.Dataset`: shipped extracts, local csv/jsonl/parquet files, or a hub dataset."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftbench.errors import UserError, shown
from peftbench.paths import is_file
from peftbench.suites import TaskSpec, suites_dir

FORMATS = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
SUBSET_SEED = 1234  # fixed: the default-size subset must not change with the run's seed


@dataclass
class TaskData:
    train: Any  # datasets.Dataset
    eval: Any
    fingerprint: str  # sha256 over the exact rows used, so a data change changes the run id


def load_task_data(task: TaskSpec, scale: str = "default") -> TaskData:
    """Load, validate and (unless scale=full) subsample a task's train and eval splits."""
    splits = {name: _derive_columns(task, ds) for name, ds in _load_splits(task).items()}
    for split_name, dataset in splits.items():
        _check_columns(task, split_name, dataset)
        if len(dataset) == 0:
            raise UserError(f"task '{task.name}': the {split_name} split is empty")
    if scale != "full":
        splits = {name: _subset(ds, task.sizes.get(name)) for name, ds in splits.items()}
    for split_name, dataset in splits.items():
        _check_values(task, split_name, dataset)
    return TaskData(splits["train"], splits["eval"], fingerprint_rows(splits["train"], splits["eval"]))


def _load_splits(task: TaskSpec) -> dict[str, Any]:
    import datasets

    datasets.disable_progress_bars()
    data = task.data
    source = data["source"]
    try:
        if source == "shipped":
            folder = suites_dir() / data["path"]
            return {s: _load_file(folder / f"{s}.jsonl", task) for s in ("train", "eval")}
        if source == "local":
            files = data.get("files") or {}
            if set(files) != {"train", "eval"}:
                raise UserError(f"task '{task.name}': data.files needs 'train' and 'eval' paths")
            return {s: _load_file(Path(p).expanduser(), task) for s, p in files.items()}
        return _load_hub(task)
    except (FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError) as exc:
        raise UserError(f"task '{task.name}': cannot load data ({source}): {str(exc).splitlines()[0]}") from None


def _load_hub(task: TaskSpec) -> dict[str, Any]:
    """`datasets.load_dataset(id, config, split=..., revision=...)`; `id` may also be a local copy of the
    dataset's repository. Split slices (`train[:80%]`) split datasets that ship one split only."""
    import datasets

    data = task.data
    splits = data.get("splits") or {"train": "train", "eval": "validation"}
    try:
        return {s: datasets.load_dataset(data["id"], data.get("config"), split=hub_split,
                                         revision=data.get("revision"))
                for s, hub_split in splits.items()}
    except Exception as exc:  # noqa: BLE001 - offline, gated, renamed...: the hub's errors have no common base
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"task '{task.name}': cannot load hub dataset '{data['id']}' ({first}); it needs the "
                        "Hugging Face hub, or data.id pointing at a local copy") from None


def _load_file(path: Path, task: TaskSpec) -> Any:
    return load_data_file(path, task.fields.values(), f"task '{task.name}'")


def load_data_file(path: Path, columns: Iterable[str], where: str) -> Any:
    """One local data file as a `datasets.Dataset`, every problem a one-line UserError starting with `where`:
    an unknown format, a missing, empty or non-UTF-8 file, JSON nested too deep to parse safely, a parse
    failure. `columns` (field specs such as `a + b` allowed) are the ones the caller reads: in a CSV file they
    are read as the strings written (see _csv_options)."""
    import datasets

    fmt = FORMATS.get(path.suffix)
    if fmt is None:
        raise UserError(f"{where}: {path} must be one of {', '.join(FORMATS)}")
    if not is_file(path):
        raise UserError(f"{where}: data file {path} does not exist")
    if fmt != "parquet" and not _utf8_text(path, where):
        raise UserError(f"{where}: data file {path} is empty")
    if fmt == "json":
        check_json_depth(path, where)
    options = _csv_options(path, columns, where) if fmt == "csv" else {}
    try:
        with _datasets_quiet():
            return datasets.load_dataset(fmt, data_files=str(path), split="train", **options)
    except (datasets.exceptions.DatasetGenerationError, StopIteration) as exc:
        raise UserError(f"{where}: cannot parse {path}: {_first_line(exc.__cause__ or exc)}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


@contextlib.contextmanager
def _datasets_quiet() -> Iterator[None]:
    """datasets logs its own "Failed to read file ..." line before raising; peftbench's one line says the same."""
    from datasets.utils import logging as datasets_logging

    level = datasets_logging.get_verbosity()
    datasets_logging.set_verbosity(datasets_logging.CRITICAL)
    datasets_logging.disable_progress_bar()  # "Generating train split" bars would break the one-line contract
    try:
        yield
    finally:
        datasets_logging.set_verbosity(level)


def _csv_options(path: Path, columns: Iterable[str], where: str) -> dict[str, Any]:
    """pandas' reading of a CSV file, for datasets: the columns the task reads are strings as written, where
    pandas would guess `NA`, `None`, `null`, `n/a`... to be missing (a label `NA` is a label, a text `None` a
    text); only an empty cell is missing there. The other columns keep pandas' own reading."""
    import pandas as pd
    from pandas._libs.parsers import STR_NA_VALUES

    try:
        header = [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"{where}: cannot parse {path}: {_first_line(exc)}") from None
    read = {part for spec in columns for part in _parts(spec)} & set(header)
    return {"converters": {column: str for column in read}, "keep_default_na": False,
            "na_values": {column: [""] if column in read else sorted(STR_NA_VALUES) for column in header}}


MAX_DATA_DEPTH = 100  # nested lists/objects in a data file; a row is a few fields, at most a level or two deep
# A string, or a bracket outside strings (group 1). A string not closed on its line runs to the line's end:
# the closing quote is optional, so a match never fails and backtracks, and the scan stays linear.
_JSON_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"?|([][{}])')
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def check_json_depth(path: Path, where: str) -> None:
    """Refuse a JSON or JSON-lines file nested deeper than MAX_DATA_DEPTH: datasets' JSON readers recurse,
    and 100,000 levels kill the process with SIGSEGV instead of raising. Counted on the text (brackets
    outside strings, which JSON keeps on one line), so nothing deep is ever handed to a parser."""
    depth, line = 0, 1
    with path.open(encoding="utf-8", errors="replace") as handle:
        while chunk := handle.read(1 << 20):
            chunk += handle.readline()  # whole lines: a string never spans two chunks
            levels = list(_levels(chunk, depth))
            if max(levels, default=0) > MAX_DATA_DEPTH:
                raise UserError(f"{where}: data file {path} line {line + _deep_line(chunk, depth)} nests "
                                f"values more than {MAX_DATA_DEPTH} levels deep; a row is a record of fields")
            depth, line = levels[-1] if levels else depth, line + chunk.count("\n")


def _levels(text: str, depth: int) -> Iterator[int]:
    """The nesting depth after each bracket of `text`, starting at `depth`; never below 0, so that stray
    closing brackets cannot hide the openers after them."""
    steps = map(_DEPTH_STEP.__getitem__, filter(None, _JSON_TOKEN.findall(text)))
    return itertools.accumulate(steps, lambda level, step: max(0, level + step), initial=depth)


def _deep_line(chunk: str, depth: int) -> int:
    """The index of the chunk's first line that goes past MAX_DATA_DEPTH, starting at `depth`."""
    for index, text in enumerate(chunk.split("\n")):
        levels = list(_levels(text, depth))
        if max(levels) > MAX_DATA_DEPTH:
            return index
        depth = levels[-1]
    return 0


def _utf8_text(path: Path, where: str) -> bool:
    """Whether the file holds anything but whitespace; a UserError where it is not UTF-8 (datasets would
    fail deep inside its JSON or CSV reader with a traceback)."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    content, offset = False, 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            try:
                content = bool(decoder.decode(chunk).strip()) or content
            except UnicodeDecodeError as exc:
                raise UserError(f"{where}: data file {path} is not UTF-8 (byte {offset + exc.start}); "
                                "save it as UTF-8") from None
            offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise UserError(f"{where}: data file {path} ends inside a UTF-8 character; save it as UTF-8") \
            from None
    return content


def _check_values(task: TaskSpec, split: str, dataset: Any) -> None:
    """No missing values in the declared columns, and (where the suite declares them) only known labels: found
    here, before any run starts, not inside each run's worker."""
    for role, column in task.fields.items():
        values = dataset[column]
        missing = sum(1 for v in values if v is None)
        if missing:
            raise UserError(f"task '{task.name}': {split} column '{column}' ({role}) has {missing} empty (null) "
                            "value(s); fill or drop those rows")
    if task.kind == "classification" and task.labels:
        unknown = sorted({str(v) for v in dataset[task.fields["label"]]} - set(task.labels))
        if unknown:
            raise UserError(f"task '{task.name}': {split} labels {', '.join(shown(u) for u in unknown[:5])} are not "
                            f"in the declared label set {list(task.labels)}")


def _derive_columns(task: TaskSpec, dataset: Any) -> Any:
    """Make hub datasets' shapes usable by the flat-column tasks, without a preprocessing script:
    nested columns are addressed as `parent.child` (datasets' own `flatten`), `a + b` joins columns into
    one text, a list of strings becomes one text, and ClassLabel ints become their names."""
    import datasets

    wanted = set(task.fields.values())
    if any("." in part for spec in wanted for part in _parts(spec) if part not in dataset.column_names):
        dataset = dataset.flatten()
    derived = {spec for spec in wanted if spec not in dataset.column_names
               and all(part in dataset.column_names for part in _parts(spec))}
    listed = {spec for spec in wanted if spec in dataset.column_names
              and isinstance(dataset.features[spec], datasets.Sequence | list)}  # List subclasses Sequence
    derived |= listed - {task.fields.get("choices")}
    if derived:
        dataset = dataset.map(lambda row: {spec: "\n".join(_as_text(row[p]) for p in _parts(spec)) for spec in derived})
    label = task.fields.get("label")
    if label in dataset.column_names and isinstance(dataset.features[label], datasets.ClassLabel):
        names = dataset.features[label].names
        dataset = dataset.map(lambda row: {label: names[row[label]]},
                              features=datasets.Features({**dataset.features, label: datasets.Value("string")}))
    return dataset


def _parts(spec: str) -> list[str]:
    return [part.strip() for part in spec.split(" + ")]


def _as_text(value: Any) -> str:
    return " ".join(str(v) for v in value) if isinstance(value, list) else str(value)


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
