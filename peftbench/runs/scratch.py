"""A run's temporary folder, removed however the driver ends, and the kernel's OOM-kill evidence.

Each run gets `$TMPDIR/peftbench-run-*`, which is also the worker's TMPDIR (so whatever the worker and its
libraries write to a temporary folder goes with it). The driver holds an fcntl lock on `owner.lock` inside
it for the run's life: on a normal end or an interrupt the folder is removed on the way out; after a
SIGKILL of the driver nothing runs, but the kernel drops the lock, so the next run's `sweep_stale` can tell
the folder is orphaned (lock free) from one a live driver is using (lock held) and remove it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: folders are still removed on a normal end; no stale sweep
    fcntl = None  # type: ignore[assignment]  # each use checks for None first

PREFIX = "peftbench-run-"
OWNER_FILE = "owner.lock"


@contextlib.contextmanager
def run_folder() -> Iterator[Path]:
    """A fresh temporary folder for one run, locked as this process's while it is in use."""
    # Locked under another name, then renamed: a sweep never sees the folder unlocked.
    staging = Path(tempfile.mkdtemp(prefix="peftbench-new-"))
    fd = os.open(staging / OWNER_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    path = staging.with_name(PREFIX + staging.name.removeprefix("peftbench-new-"))
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(staging, path)
        yield path
    finally:
        os.close(fd)
        shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)


def sweep_stale(parent: Path | None = None) -> list[Path]:
    """Remove run folders left by a driver that was SIGKILLed (their owner lock is free); return them.
    Folders of live drivers (lock held) and folders without an owner file (being created) are left alone."""
    if fcntl is None:
        return []
    removed = []
    for path in Path(parent or tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            fd = os.open(path / OWNER_FILE, os.O_RDWR)
        except OSError:  # no owner file yet (just created), or not ours to open
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a live driver holds it
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)
        removed.append(path)
    return removed


def _cgroup_counters(cgroup_file: Path = Path("/proc/self/cgroup"),
                     fs: Path = Path("/sys/fs/cgroup")) -> dict[str, int]:
    """OOM kills counted by this process's memory cgroup: v2 `memory.events`, v1 `memory.oom_control`. The
    kernel counts a kill against the victim's cgroup whether the cgroup's limit or the host ran out."""
    counters: dict[str, int] = {}
    try:
        lines = cgroup_file.read_text().splitlines()
    except OSError:
        return counters
    for line in lines:
        _, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        if controllers == "":
            candidates = [fs / rel / "memory.events", fs / "unified" / rel / "memory.events"]
        elif "memory" in controllers.split(","):
            # In a cgroup namespace the mount's root is this cgroup, and the listed path does not exist.
            candidates = [fs / "memory" / rel / "memory.oom_control", fs / "memory" / "memory.oom_control"]
        else:
            continue
        for candidate in candidates:
            with contextlib.suppress(OSError, ValueError):
                rows = dict(row.partition(" ")[::2] for row in candidate.read_text().splitlines())
                if "oom_kill" in rows:
                    counters[str(candidate)] = int(rows["oom_kill"])
                    break
    return counters


def oom_kills(vmstat: Path = Path("/proc/vmstat"), **cgroup_paths: Path) -> dict[str, int]:
    """The OOM-kill counters readable here, by source: the memory cgroup's where readable; else the host's
    `/proc/vmstat` oom_kill (which also counts other processes' kills, so only used without a cgroup's)."""
    counters = _cgroup_counters(**cgroup_paths)
    if counters:
        return counters
    with contextlib.suppress(OSError, ValueError):
        for row in vmstat.read_text().splitlines():
            key, _, value = row.partition(" ")
            if key == "oom_kill":
                counters[str(vmstat)] = int(value)
    return counters
