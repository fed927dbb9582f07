"""Per-run claims, so that concurrent `peftbench run`s of one suite into one results folder share the work and
never run or record a run twice.

A driver claims a run just before starting it by taking an exclusive, non-blocking fcntl lock on
`<suite folder>/.claims/<run id>.lock`, and holds it until the run's record is appended. The kernel drops
the lock when the holder exits, however it exits (SIGKILL included), so a dead driver's claim never blocks
a resume. After claiming, the driver checks the runs file again (under the store's lock): a run another
driver recorded meanwhile is not run again. The claim file is removed once the run is recorded; a driver
that opened the old file before then still finds the run recorded and skips it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: every claim succeeds (concurrent drivers of one suite are then unsupported)
    fcntl = None  # type: ignore[assignment]  # each use checks for None first

CLAIMS_DIR = ".claims"


class RunClaims:
    def __init__(self, suite_dir: Path) -> None:
        self.dir = Path(suite_dir) / CLAIMS_DIR
        self._held: dict[str, int] = {}

    def _file(self, run_id: str) -> Path:
        return self.dir / f"{run_id}.lock"

    def try_claim(self, run_id: str) -> bool:
        """True when this driver now holds the run; False when another live driver does."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._file(run_id), os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
        self._held[run_id] = fd
        return True

    def release(self, run_id: str, recorded: bool) -> None:
        """Give the run up; remove its claim file once it is recorded (nobody needs it again)."""
        fd = self._held.pop(run_id, None)
        if fd is None:
            return
        if recorded:
            with contextlib.suppress(FileNotFoundError):
                self._file(run_id).unlink()
        os.close(fd)

    def wait_for(self, run_id: str) -> None:
        """Block until no other driver holds `run_id` (returns at once when nobody claims it)."""
        try:
            fd = os.open(self._file(run_id), os.O_RDWR)
        except FileNotFoundError:
            return
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)  # granted when the holder records the run or dies
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def release_all(self) -> None:
        for run_id in list(self._held):
            self.release(run_id, recorded=False)
