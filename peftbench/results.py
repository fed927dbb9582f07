"""The results store: one JSON line per finished run in `<results root>/<suite>/runs.jsonl`, and the tidy table.

Two sets of results. The user's: `./results` in the current directory (or `--results DIR`, or
`$PEFTBENCH_RESULTS`), where `peftbench run` writes. The reference results: measured by peftbench's
maintainers, shipped inside the package (`peftbench.reference_results`) and read-only; the recommender
learns from them and the published corpus, never from a user's ad-hoc runs unless named.

Crash safety: each record is appended with a single `write` on an O_APPEND descriptor and fsynced. A
SIGKILL cannot interrupt a write system call halfway, so the file always holds whole lines; a torn
final line (power loss) is cut off the next time the store opens. Only drivers (`peftbench run`) write, under an
fcntl lock on the suite folder's `.runs.lock`, so concurrent drivers of one suite never interleave a rewrite
with an append. A line that is not a run record is skipped by every reader and reported once.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not POSIX: no cross-process lock (concurrent drivers of one suite are then unsupported)
    fcntl = None

RUNS_FILE = "runs.jsonl"
LOCK_FILE = ".runs.lock"
RESULTS_ENV = "PEFTBENCH_RESULTS"


def user_results_dir(explicit: Path | None = None) -> Path:
    """Where the user's runs go: `explicit`, else `$PEFTBENCH_RESULTS`, else `./results`."""
    return Path(explicit or os.environ.get(RESULTS_ENV) or Path.cwd() / "results").expanduser()


def reference_results_dir() -> Path:
    """The reference results shipped with the package (in a source checkout: `results/reference`)."""
    from peftbench.paths import shipped_dir

    return shipped_dir("peftbench.reference_results", "results/reference")


@dataclass(frozen=True)
class ResultSet:
    """A results root and what it is, so that every table, report and answer can say what it read."""

    root: Path
    kind: str  # "reference" | "user"

    def describe(self) -> str:
        if self.kind == "reference":
            return f"the reference results shipped with peftbench (read-only, {self.root})"
        return f"your results in {self.root}"

    def files(self, suite: str | None = None) -> list[Path]:
        if suite is None or suite == "all":
            return suite_result_files(self.root)
        path = self.root / suite / RUNS_FILE
        return [path] if path.is_file() else []


def choose_result_set(suite: str | None, explicit: Path | None = None, reference: bool = False) -> ResultSet:
    """The set a table or report reads: the reference set when asked; else the user's results, where they
    hold this suite (or, for `all`, anything); else — a fresh install — the reference set."""
    if reference:
        return ResultSet(reference_results_dir(), "reference")
    user = ResultSet(user_results_dir(explicit), "user")
    if explicit is not None or user.files(suite):
        return user
    return ResultSet(reference_results_dir(), "reference")


def is_reference_dir(path: Path) -> bool:
    try:
        return Path(path).resolve() == reference_results_dir().resolve()
    except OSError:
        return False


# What determines a run's result besides its seed. Records keep these, so runs are grouped as one
# configuration (and their seeds averaged) only when every one of them agrees.
_CONFIG_FIELDS = ("suite", "task", "model", "method", "hyperparameters", "scale", "data_fingerprint")


def config_id(record: dict[str, Any]) -> str:
    """One configuration's id: model, method configuration, data (sizes included, via the fingerprint of the
    rows used), steps, batch size, learning rate and every other training setting — all but the seed and
    the thread count. Derived from the record, so records written before the field existed group too."""
    from peftbench import identity

    return identity.config_id(**{k: record.get(k) for k in _CONFIG_FIELDS}, train_config=record.get("train_config"),
                              role=record.get("role"))


# What every reader relies on (`r["method"]`, `r["task"]`, grouping by run id): a line without these is not a
# run record. Nested fields, where present, must have the type readers index them as.
_REQUIRED = ("run_id", "status", "suite", "task", "method")
_NESTED = {"hyperparameters": dict, "train_config": dict, "metrics": dict, "memory": dict, "device": dict,
           "versions": dict, "prediction": dict, "train_loss_curve": list}
_reported: set[tuple[str, int]] = set()  # (file, line) already reported in this process: each is said once


def not_a_record(value: Any) -> str | None:
    """Why a parsed JSON line is not a run record, or None when it is one."""
    if not isinstance(value, dict):
        return f"a JSON {type(value).__name__ if value is not None else 'null'}, not an object"
    missing = [k for k in _REQUIRED if not isinstance(value.get(k), str) or not value[k]]
    if missing:
        return f"no {', '.join(missing)}"
    if "seed" in value and (not isinstance(value["seed"], int) or isinstance(value["seed"], bool)):
        return "seed is not an integer"
    wrong = [k for k, kind in _NESTED.items() if value.get(k) is not None and not isinstance(value[k], kind)]
    return f"{', '.join(wrong)} of the wrong type" if wrong else None


# Fields that readers compute with (tables average them, the recommender fits them, reports plot them): text
# there fails deep inside pandas or numpy, far from the file, so a record carrying it is skipped at reading.
# Counts and sizes are also bounded; measurements are not (a diverged run's perplexity ratio passes 1e19, and
# its loss may be NaN).
_COUNT_FIELDS = ("adapter_bytes", "eval_examples", "steps", "total_params", "train_examples", "train_tokens",
                 "trainable_params", "effective_batch_size", "gradient_accumulation_steps", "micro_batch_size",
                 "prediction.peak_bytes", "prediction.total_params", "prediction.trainable_params",
                 "train_config.max_steps", "train_config.batch_size")
_MEASURE_FIELDS = ("eval_seconds", "final_train_loss", "mean_input_tokens", "mean_target_tokens", "seconds_per_step",
                   "tokens_per_second", "train_seconds", "trainable_percent", "wall_seconds",
                   "prediction.step_seconds", "prediction.flops_per_step", "train_config.learning_rate",
                   "hyperparameters.learning_rate", "inference.overhead_unmerged", "inference.overhead_merged",
                   "inference.overhead_served", "forgetting.delta_nats", "forgetting.perplexity_ratio")
_TEXT_FIELDS = ("role", "model", "scale", "family", "task_kind", "architecture", "model_type", "model_source",
                "data_fingerprint", "machine_id", "recorded_by", "error", "finished_at", "adapter_path")
# No count or size of a run comes near this; past it, the int64 columns tables keep them in overflow.
LARGEST_COUNT = 1e18


def wrong_field_types(record: dict[str, Any]) -> str | None:
    """What in a run record has a type readers cannot use (text where a number belongs, a count or size that is
    negative, NaN or past `LARGEST_COUNT`, a list where text belongs), or None. Absent fields and nulls are fine."""
    counts = [(name, _field(record, name)) for name in _COUNT_FIELDS]
    counts += [(f"memory.{k}", v) for k, v in (record.get("memory") or {}).items() if not isinstance(v, bool)]
    measures = [(name, _field(record, name)) for name in _MEASURE_FIELDS]
    measures += [(f"metrics.{k}", v) for k, v in (record.get("metrics") or {}).items()]
    for name, value in counts + measures:
        if value is not None and not (isinstance(value, int | float) and not isinstance(value, bool)):
            return f"{name} is {_shown_value(value)}, not a number"
    for name, value in counts:
        if value is not None and not 0 <= value <= LARGEST_COUNT:  # NaN too: tables make counts integers
            return f"{name} is {value:g}, not a count or size (0 to {LARGEST_COUNT:g})"
    for name in _TEXT_FIELDS:
        if record.get(name) is not None and not isinstance(record[name], str):
            return f"{name} is a JSON {type(record[name]).__name__}, not text"
    return None


def _field(record: dict[str, Any], dotted: str) -> Any:
    group, _, key = dotted.partition(".")
    value = record.get(group)
    if not key:
        return value
    return value.get(key) if isinstance(value, dict) else None


def _shown_value(value: Any) -> str:
    from peftbench.errors import shown

    return shown(value, 30) if isinstance(value, str | int | float) else f"a JSON {type(value).__name__}"


# The two ways a line is skipped, reported apart: the first is not a run at all, the second is one whose
# fields cannot be read as what they are.
NOT_A_RECORD, WRONG_TYPES = "not a record", "wrong field types"


def _parse(raw: bytes) -> tuple[dict[str, Any] | None, tuple[str, str] | None]:
    """(the record, None), or (None, (which kind of skip, why))."""
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None, (NOT_A_RECORD, "not JSON")
    why = not_a_record(value)
    if why:
        return None, (NOT_A_RECORD, why)
    why = wrong_field_types(value)
    return (None, (WRONG_TYPES, why)) if why else (value, None)


class ResultStore:
    """One suite's runs file. Every reader of runs files goes through `records()`; concurrent drivers of one
    suite folder serialise their appends and rewrites with `locked()`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock_depth = 0
        self._lock_fd: int | None = None
        self._thread_lock = threading.RLock()

    @classmethod
    def for_suite(cls, suite: str, root: Path) -> ResultStore:
        return cls(Path(root) / suite / RUNS_FILE)

    def records(self) -> list[dict[str, Any]]:
        """Every run record in the file. A line that is not one (not JSON, or JSON that is not a record) is
        skipped and reported once on stderr with its line number: one bad line never blocks a table, a report,
        a recommendation or a resume. A last line without its newline is an append in progress (or torn by a
        power loss: `repair` cuts it) and is skipped silently."""
        return [record for _, _, record in self._lines() if record is not None]

    def _lines(self) -> list[tuple[int, bytes, dict[str, Any] | None]]:
        """(line number, raw line, the record or None) for every line of the file."""
        if not self.path.is_file():
            return []
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        torn = lines.pop()  # b"" when the file ends with a newline
        out, bad = [], []
        for number, raw in enumerate(lines, start=1):
            if raw.strip():
                record, why = _parse(raw)
                out.append((number, raw, record))
                if why:
                    bad.append((number, *why))
        if torn.strip():
            out.append((len(lines) + 1, torn, _parse(torn)[0]))  # a whole record that lacks its newline counts
        self._report(bad)
        return out

    def _report(self, bad: list[tuple[int, str, str]]) -> None:
        """One stderr line for the lines of this file skipped since the last report (each is said once)."""
        where = os.path.abspath(self.path)
        fresh = [(n, kind, why) for n, kind, why in bad if (where, n) not in _reported]
        if not fresh:
            return
        _reported.update((where, n) for n, _, _ in fresh)
        parts = []
        for kind, heading in ((NOT_A_RECORD, "skipped {} line(s) that are not run records"),
                              (WRONG_TYPES, "{} records skipped: wrong field types")):
            of_kind = [(n, why) for n, k, why in fresh if k == kind]
            if of_kind:
                shown = "; ".join(f"line {n}: {why}" for n, why in of_kind[:5])
                more = f"; and {len(of_kind) - 5} more" if len(of_kind) > 5 else ""
                parts.append(f"{heading.format(len(of_kind))} ({shown}{more})")
        sys.stderr.write(f"peftbench: warning: {self.path}: {'; '.join(parts)}\n")

    def latest(self, machine: str | None = None) -> dict[str, dict[str, Any]]:
        """The last record of each run (recorded on `machine`, when given), by run id."""
        return {r["run_id"]: r for r in self.records() if machine is None or _recorded_on(r, machine)}

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive use of the runs file among processes (an fcntl lock on a file beside it, released by the
        kernel if the holder dies) and threads; reentrant. Readers need no lock: appends are single writes
        and rewrites are atomic renames."""
        with self._thread_lock:
            if self._lock_depth == 0:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path.parent / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                self._lock_fd = fd
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0 and self._lock_fd is not None:
                    os.close(self._lock_fd)  # closing releases the flock
                    self._lock_fd = None

    def repair(self) -> None:
        if not self.path.is_file():
            return
        with self.locked():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):
                last = data[data.rfind(b"\n") + 1:]
                with open(self.path, "r+b") as handle:
                    if _parse(last)[0] is not None:  # whole, only its newline is missing
                        handle.seek(0, os.SEEK_END)
                        handle.write(b"\n")
                    else:
                        handle.truncate(data.rfind(b"\n") + 1)

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        with self.locked():
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                written = os.write(fd, line)
                if written != len(line):  # only on a full disk; leave no half line behind
                    os.ftruncate(fd, os.fstat(fd).st_size - written)
                    raise OSError(f"short write to {self.path}")
                os.fsync(fd)
            finally:
                os.close(fd)

    def replace(self, record: dict[str, Any], machine: str | None = None) -> None:
        """Append `record`, dropping the earlier records of its run (only `machine`'s, when given): a rerun
        (`--force`, `--retry-failed`) replaces what it reran. The file is rewritten atomically; lines that are
        not records are kept as they were (they are the user's to inspect, not ours to delete)."""
        run_id = record["run_id"]
        with self.locked():
            keep = [raw for _, raw, r in self._lines()
                    if r is None or r["run_id"] != run_id or (machine is not None and not _recorded_on(r, machine))]
            keep.append(json.dumps(record, sort_keys=True, default=str).encode())
            tmp = self.path.with_suffix(".jsonl.tmp")
            with open(tmp, "wb") as handle:
                handle.write(b"".join(raw + b"\n" for raw in keep))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)


def _recorded_on(record: dict[str, Any], machine: str) -> bool:
    """Measured on `machine`, or recorded by it from a run it handed to a Ray cluster (`recorded_by`)."""
    return machine in (record.get("machine_id"), record.get("recorded_by"))


def disk_use(root: Path, suite: str | None = None) -> dict[str, int]:
    """Bytes on disk under a results root (or one suite's folder): the runs files and the artifacts."""
    base = Path(root) / suite if suite and suite != "all" else Path(root)
    usage = {"runs_files": 0, "artifacts": 0}
    if base.is_dir():
        for path in base.rglob("*"):
            if path.is_file():
                usage["artifacts" if "artifacts" in path.parts else "runs_files"] += path.stat().st_size
    return usage


def latest_records(paths: Iterable[Path], include_sweep: bool = False) -> list[dict[str, Any]]:
    """Every record of these runs files, one per run: a rerun of the same run on another machine (a user
    re-measuring the committed reference runs) replaces the earlier record instead of counting as another
    seed. json only, no pandas: the recommender reads results on every call.

    Learning-rate sweep runs (`role: "sweep"`, scored on a validation split carved from the training rows,
    see peftbench.runs.tuning) are left out unless `include_sweep`: their scores are not eval-split scores.
    Of several selected runs of one (task, method configuration, seed) at different rates, the last
    recorded is the selection."""
    records = [r for path in paths for r in ResultStore(Path(path)).records()]
    if not include_sweep:
        records = [r for r in records if r.get("role") != "sweep"]
    latest = list({r["run_id"]: r for r in records}.values())
    # A re-selection (a sweep extended past its grid, see runs.tuning) supersedes the earlier selected run of
    # the same task, method configuration and seed: the one recorded last is the selection.
    selection = {key: r for r in latest if (key := _selection_key(r)) is not None}
    return [r for r in latest if (key := _selection_key(r)) is None or selection[key] is r]


def tuned_over_untuned(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Where a method was tuned on a task (`tune=lr`: selected runs), its plain runs at the one default rate
    are left out: pooled with the tuned seeds they would be read as more seeds of one configuration, and
    beside them as a second configuration they would count the method twice in one comparison."""
    def key(r: dict[str, Any]) -> tuple:
        return r.get("suite"), r.get("task"), r.get("model"), r.get("method")
    tuned = {key(r) for r in records if r.get("role") == "selected"}
    return [r for r in records if r.get("role") == "selected" or key(r) not in tuned]


def _selection_key(record: dict[str, Any]) -> str | None:
    """A selected run's identity without the learning rate the selection chose: its configuration id
    (`config_id`) with the rate taken out, plus the seed and the grid; None for other runs."""
    if record.get("role") != "selected":
        return None
    from peftbench.cache import key_of

    without_rate = {**record,
                    "hyperparameters": {k: v for k, v in (record.get("hyperparameters") or {}).items()
                                        if k != "learning_rate"},
                    "train_config": {k: v for k, v in (record.get("train_config") or {}).items()
                                     if k != "learning_rate"}}
    return key_of(config_id(without_rate), record.get("seed"), (record.get("tune") or {}).get("grid"), length=16)


def load_table(paths: Iterable[Path], include_sweep: bool = False):
    """All records as one tidy pandas DataFrame: nested fields flattened (`metrics.accuracy`, `memory.*`), and
    `config`: the method plus any non-default hyper-parameters ("lora r=16"), the unit tables compare."""
    import pandas as pd

    records = latest_records(paths, include_sweep)
    if not records:
        return pd.DataFrame()
    table = pd.json_normalize(records, sep=".")
    table["config_id"] = [config_id(r) for r in records]
    table["config"] = configuration_labels(records)
    return table


def configuration_labels(records: list[dict[str, Any]]) -> list[str]:
    """Each record's configuration label: the method and its non-default hyper-parameters ("lora r=16"),
    plus, where two configurations of one task would otherwise share a label, the settings that tell them
    apart ("lora (max_steps=2, model=tiny)"): two configurations never read as two seeds of one."""
    from peftbench.methods.base import variant_label

    base = [variant_label(r["method"], r.get("hyperparameters")) for r in records]
    ids = [config_id(r) for r in records]
    groups: dict[tuple[Any, str], set[str]] = {}
    for record, label, cid in zip(records, base, ids, strict=True):
        groups.setdefault((record.get("suite"), record.get("task"), label), set()).add(cid)
    settings = [_settings(r) for r in records]
    labels = []
    for i, (record, label) in enumerate(zip(records, base, strict=True)):
        if len(groups[(record.get("suite"), record.get("task"), label)]) == 1:
            labels.append(label)
            continue
        rivals = [settings[j] for j, r in enumerate(records) if (r.get("suite"), r.get("task"), base[j])
                  == (record.get("suite"), record.get("task"), label) and ids[j] != ids[i]]
        differing = sorted(k for k, v in settings[i].items() if any(o.get(k) != v for o in rivals))
        shown = [_ROLE_WORDS.get(settings[i][k], str(settings[i][k])) if k == "role" else f"{k}={settings[i][k]}"
                 for k in differing]
        labels.append(f"{label} ({', '.join(shown) or ids[i]})")
    return labels


# How a run's role reads in a label: "lora (lr=0.006, tuned)" beside "lora (lr=0.002, untuned)".
_ROLE_WORDS = {None: "untuned", "selected": "tuned", "sweep": "sweep"}


def _settings(record: dict[str, Any]) -> dict[str, Any]:
    train = record.get("train_config") or {}
    return {"model": record.get("model"), "max_steps": train.get("max_steps"), "batch_size": train.get("batch_size"),
            "lr": train.get("learning_rate"), "train_examples": record.get("train_examples"),
            "eval_examples": record.get("eval_examples"), "scale": record.get("scale"),
            "data": record.get("data_fingerprint"), "role": record.get("role")}


def suite_result_files(root: Path) -> list[Path]:
    return sorted(Path(root).glob(f"*/{RUNS_FILE}"))
