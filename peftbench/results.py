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
import errno
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from peftbench.paths import reference_results_dir
from peftbench.record import NOT_A_RECORD, WRONG_TYPES, RunRecord
from peftbench.record import parse as _parse

try:
    import fcntl
except ImportError:  # not POSIX: no cross-process lock (concurrent drivers of one suite are then unsupported)
    fcntl = None  # type: ignore[assignment]

RUNS_FILE = "runs.jsonl"
LOCK_FILE = ".runs.lock"
RESULTS_ENV = "PEFTBENCH_RESULTS"
_Item = TypeVar("_Item")


def user_results_dir(explicit: Path | None = None) -> Path:
    """Where the user's runs go: `explicit`, else `$PEFTBENCH_RESULTS`, else `./results`."""
    return Path(explicit or os.environ.get(RESULTS_ENV) or Path.cwd() / "results").expanduser()


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


_reported: set[tuple[str, int]] = set()  # (file, line) already reported in this process: each is said once


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

    def records(self) -> list[RunRecord]:
        """Every run record in the file. A line that is not one (not JSON, or JSON that is not a record) is
        skipped and reported once on stderr with its line number: one bad line never blocks a table, a report,
        a recommendation or a resume. A last line without its newline is an append in progress (or torn by a
        power loss: `repair` cuts it) and is skipped silently."""
        return [record for _, _, record in self._lines() if record is not None]

    def _lines(self) -> list[tuple[int, bytes, RunRecord | None]]:
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

    def latest(self, machine: str | None = None) -> dict[str, RunRecord]:
        """The last record of each run (recorded on `machine`, when given), by run id."""
        return {r.run_id: r for r in self.records() if machine is None or r.recorded_on(machine)}

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

    def append(self, record: RunRecord | dict[str, Any]) -> None:
        """Add a record (a RunRecord, or the fields of one just made: stamped with the current schema version)."""
        line = (_as_record(record).to_json() + "\n").encode()
        with self.locked():
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                written = os.write(fd, line)
                if written != len(line):  # only on a full disk; leave no half line behind
                    os.ftruncate(fd, os.fstat(fd).st_size - written)
                    raise OSError(errno.ENOSPC, f"short write to {self.path}")
                os.fsync(fd)
            finally:
                os.close(fd)

    def replace(self, record: RunRecord | dict[str, Any], machine: str | None = None) -> None:
        """Append `record`, dropping the earlier records of its run (only `machine`'s, when given): a rerun
        (`--force`, `--retry-failed`) replaces what it reran. The file is rewritten atomically; lines that are
        not records are kept as they were (they are the user's to inspect, not ours to delete)."""
        record = _as_record(record)
        with self.locked():
            keep = [raw for _, raw, r in self._lines()
                    if r is None or r.run_id != record.run_id or (machine is not None and not r.recorded_on(machine))]
            keep.append(record.to_json().encode())
            tmp = self.path.with_suffix(".jsonl.tmp")
            with open(tmp, "wb") as handle:
                handle.write(b"".join(raw + b"\n" for raw in keep))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)


def _as_record(record: RunRecord | dict[str, Any]) -> RunRecord:
    return record if isinstance(record, RunRecord) else RunRecord.new(record)


def disk_use(root: Path, suite: str | None = None) -> dict[str, int]:
    """Bytes on disk under a results root (or one suite's folder): the runs files and the artifacts."""
    base = Path(root) / suite if suite and suite != "all" else Path(root)
    usage = {"runs_files": 0, "artifacts": 0}
    if base.is_dir():
        for path in base.rglob("*"):
            if path.is_file():
                usage["artifacts" if "artifacts" in path.parts else "runs_files"] += path.stat().st_size
    return usage


def latest_records(paths: Iterable[Path], include_sweep: bool = False) -> list[RunRecord]:
    """Every record of these runs files, one per run: a rerun of the same run on another machine (a user
    re-measuring the committed reference runs) replaces the earlier record instead of counting as another
    seed. json only, no pandas: the recommender reads results on every call.

    Learning-rate sweep runs (`role: "sweep"`, scored on a validation split carved from the training rows,
    see peftbench.runs.tuning) are left out unless `include_sweep`: their scores are not eval-split scores.
    Of several selected runs of one (task, method configuration, seed) at different rates, the last
    recorded is the selection."""
    records = [r for path in paths for r in ResultStore(Path(path)).records()]
    if not include_sweep:
        records = [r for r in records if not r.is_sweep]
    latest = list({r.run_id: r for r in records}.values())
    # A re-selection (a sweep extended past its grid, see runs.tuning) supersedes the earlier selected run of
    # the same task, method configuration and seed: the one recorded last is the selection.
    selection = {key: r for r in latest if (key := _selection_key(r)) is not None}
    return [r for r in latest if (key := _selection_key(r)) is None or selection[key] is r]


def tuned_over_untuned(records: list[_Item], facts: Callable[[_Item], tuple[tuple[Any, ...], str | None]] | None = None
                       ) -> list[_Item]:
    """Where a method was tuned on a task (`tune=lr`: selected runs), its plain runs at the one default rate
    are left out: pooled with the tuned seeds they would be read as more seeds of one configuration, and
    beside them as a second configuration they would count the method twice in one comparison. `facts` gives
    an item's (suite, task, model, method) and role: by default the item is a RunRecord; tables pass rows."""
    of = facts or _tuning_facts
    tuned = {key for key, role in map(of, records) if role == "selected"}
    return [r for r in records if (fact := of(r))[1] == "selected" or fact[0] not in tuned]


def _tuning_facts(record: Any) -> tuple[tuple[Any, ...], str | None]:
    return (record.suite, record.task, record.model, record.method), record.role


def _selection_key(record: RunRecord) -> str | None:
    """A selected run's identity without the learning rate the selection chose: its configuration id
    (`config_id`) with the rate taken out, plus the seed and the grid; None for other runs."""
    if record.role != "selected":
        return None
    from peftbench import identity
    from peftbench.cache import key_of

    without_rate = identity.config_id(
        suite=record.suite, task=record.task, model=record.model, method=record.method, scale=record.scale,
        hyperparameters={k: v for k, v in record.hyperparameters.items() if k != "learning_rate"},
        data_fingerprint=record.data_fingerprint, role=record.role,
        train_config={k: v for k, v in record.train_config.items() if k != "learning_rate"})
    return key_of(without_rate, record.seed, (record.tune or {}).get("grid"), length=16)


def load_table(paths: Iterable[Path], include_sweep: bool = False):
    """All records as one tidy pandas DataFrame: nested fields flattened (`metrics.accuracy`, `memory.*`), and
    `config`: the method plus any non-default hyper-parameters ("lora r=16"), the unit tables compare."""
    import pandas as pd

    records = latest_records(paths, include_sweep)
    if not records:
        return pd.DataFrame()
    table = pd.json_normalize([r.to_dict() for r in records], sep=".")
    table["config_id"] = [r.config_id for r in records]
    table["config"] = configuration_labels(records)
    return table


def configuration_labels(records: list[RunRecord]) -> list[str]:
    """Each record's configuration label: the method and its non-default hyper-parameters ("lora r=16"),
    plus, where two configurations of one task would otherwise share a label, the settings that tell them
    apart ("lora (max_steps=2, model=tiny)"): two configurations never read as two seeds of one."""
    from peftbench.methods.base import variant_label

    base = [variant_label(r.method, r.hyperparameters) for r in records]
    ids = [r.config_id for r in records]
    groups: dict[tuple[str, str, str], set[str]] = {}
    for record, label, cid in zip(records, base, ids, strict=True):
        groups.setdefault((record.suite, record.task, label), set()).add(cid)
    settings = [_settings(r) for r in records]
    labels = []
    for i, (record, label) in enumerate(zip(records, base, strict=True)):
        if len(groups[(record.suite, record.task, label)]) == 1:
            labels.append(label)
            continue
        rivals = [settings[j] for j, r in enumerate(records)
                  if (r.suite, r.task, base[j]) == (record.suite, record.task, label) and ids[j] != ids[i]]
        differing = sorted(k for k, v in settings[i].items() if any(o.get(k) != v for o in rivals))
        shown = [_ROLE_WORDS.get(settings[i][k], str(settings[i][k])) if k == "role" else f"{k}={settings[i][k]}"
                 for k in differing]
        labels.append(f"{label} ({', '.join(shown) or ids[i]})")
    return labels


# How a run's role reads in a label: "lora (lr=0.006, tuned)" beside "lora (lr=0.002, untuned)".
_ROLE_WORDS = {None: "untuned", "selected": "tuned", "sweep": "sweep"}


def _settings(record: RunRecord) -> dict[str, Any]:
    train = record.train_config
    return {"model": record.model, "max_steps": train.get("max_steps"), "batch_size": train.get("batch_size"),
            "lr": train.get("learning_rate"), "train_examples": record.train_examples,
            "eval_examples": record.eval_examples, "scale": record.scale,
            "data": record.data_fingerprint, "role": record.role}


def suite_result_files(root: Path) -> list[Path]:
    return sorted(Path(root).glob(f"*/{RUNS_FILE}"))
