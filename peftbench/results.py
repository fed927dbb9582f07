"""The results store: one JSON line per finished run in `results/<suite>/runs.jsonl`, and the tidy table.

Crash safety: each record is appended with a single `write` on an O_APPEND descriptor and fsynced. A
SIGKILL cannot interrupt a write system call halfway, so the file always holds whole lines; a torn
final line (power loss) is cut off the next time the store opens. The parent process is the only writer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"
RUNS_FILE = "runs.jsonl"


class ResultStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def for_suite(cls, suite: str, root: Path = RESULTS_DIR) -> ResultStore:
        return cls(Path(root) / suite / RUNS_FILE)

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line from a power loss; `repair` removes it before the next append
        return records

    def completed_ids(self, machine: str | None = None) -> set[str]:
        """Run ids recorded (on `machine`, when given: another machine's record is not this one's measurement)."""
        return {r["run_id"] for r in self.records() if machine is None or r.get("machine_id") == machine}

    def repair(self) -> None:
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
            if written != len(line):  # only on a full disk; leave no half line behind
                os.ftruncate(fd, os.fstat(fd).st_size - written)
                raise OSError(f"short write to {self.path}")
            os.fsync(fd)
        finally:
            os.close(fd)

    def remove(self, run_ids: Iterable[str], machine: str | None = None) -> None:
        """Drop records (for `--force` reruns; only `machine`'s, when given), rewriting the file atomically."""
        drop = set(run_ids)
        keep = [r for r in self.records()
                if r["run_id"] not in drop or (machine is not None and r.get("machine_id") != machine)]
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in keep))
        os.replace(tmp, self.path)


def latest_records(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every record of these runs files, one per run: a rerun of the same run on another machine (a user
    re-measuring the committed reference runs) replaces the earlier record instead of counting as another
    seed. json only, no pandas: the recommender reads results on every call."""
    records = [r for path in paths for r in ResultStore(Path(path)).records()]
    return list({r["run_id"]: r for r in records}.values())


def load_table(paths: Iterable[Path]):
    """All records as one tidy pandas DataFrame: nested fields flattened (`metrics.accuracy`, `memory.*`), and
    `config`: the method plus any non-default hyper-parameters ("lora r=16"), the unit tables compare."""
    import pandas as pd

    from peftbench.methods.base import variant_label

    records = latest_records(paths)
    if not records:
        return pd.DataFrame()
    table = pd.json_normalize(records, sep=".")
    table["config"] = [variant_label(r["method"], r.get("hyperparameters")) for r in records]
    return table


def suite_result_files(root: Path = RESULTS_DIR) -> list[Path]:
    return sorted(Path(root).glob(f"*/{RUNS_FILE}"))
