"""Executors run RunSpecs and hand back records. The suite runner only talks to this interface.

`LocalExecutor` runs each spec in a fresh Python process: a crash, OOM or segfault in a run cannot take
the suite down, and the process's peak memory belongs to that run alone. With `jobs > 1` it keeps that many
worker processes busy at once (single-threaded CPU runs scale better across processes than across torch
threads: tokenisation, generation loops and small matmuls do not parallelise inside one process).
`RayExecutor` (`peftbench.runs.ray_executor`) hands each spec to a Ray cluster, where a task runs the same
`run_worker`; records come back to the parent process, which stays the only writer of the results file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sized
from pathlib import Path
from typing import Any

from peftbench.record import RunRecord
from peftbench.runs.spec import RunSpec, base_record

# A run's record: the fields its worker gathered (stamped when stored), or a RunRecord the executor already made.
OnRecord = Callable[[RunSpec, RunRecord | dict[str, Any]], None]
OnEvent = Callable[[RunSpec, dict[str, Any]], None]


class Executor(ABC):
    @abstractmethod
    def execute(self, specs: Iterable[RunSpec], artifacts_dir: Path, on_record: OnRecord,
                on_event: OnEvent | None = None) -> None:
        """Run every spec; call `on_record(spec, record)` once per spec, whatever happened to it."""


class LocalExecutor(Executor):
    def __init__(self, timeout_seconds: float | None = None, jobs: int = 1, die_with_parent: bool = False) -> None:
        self.timeout_seconds = timeout_seconds
        self.jobs = max(1, jobs)
        # Workers are SIGKILLed when this process dies (Linux): a killed Ray worker leaves no orphaned run.
        self.die_with_parent = die_with_parent
        self._live: set[subprocess.Popen] = set()
        self._live_lock = threading.Lock()
        self._stopping = False

    def execute(self, specs: Iterable[RunSpec], artifacts_dir: Path, on_record: OnRecord,
                on_event: OnEvent | None = None) -> None:
        """Specs are taken from `specs` one at a time as workers free up (a lazy iterable lets the caller
        claim each run just before it starts). On an interrupt (KeyboardInterrupt, or SIGTERM turned into
        one by the driver) the workers are killed, their temporary folders removed, and nothing is recorded
        for the runs they were doing: those stay pending for the next run."""
        from peftbench.runs.scratch import sweep_stale

        sweep_stale()
        if not isinstance(specs, Sized):
            specs = list(specs)
        jobs = min(self.jobs, len(specs))
        self._stopping = False
        try:
            if jobs <= 1:
                for spec in specs:
                    on_record(spec, self._run_one(spec, artifacts_dir / spec.run_id, on_event))
            else:
                self._execute_parallel(iter(specs), jobs, artifacts_dir, on_record, on_event)
        finally:
            self._stop_workers()

    def _execute_parallel(self, specs: Iterator[RunSpec], jobs: int, artifacts_dir: Path, on_record: OnRecord,
                          on_event: OnEvent | None) -> None:
        """Threads only wait on worker processes; records and events reach the caller one at a time."""
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        lock = threading.Lock()

        def locked_event(spec: RunSpec, event: dict[str, Any]) -> None:
            if on_event is not None:
                with lock:
                    on_event(spec, event)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            running: dict[Any, RunSpec] = {}

            def submit_next() -> None:
                spec = next(specs, None)
                if spec is not None:
                    running[pool.submit(self._run_one, spec, artifacts_dir / spec.run_id, locked_event, jobs)] = spec

            try:
                for _ in range(jobs):
                    submit_next()
                while running:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        spec = running.pop(future)
                        with lock:
                            on_record(spec, future.result())
                        submit_next()
            except BaseException:
                self._stop_workers()  # before the pool waits for its threads, which wait on the workers
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    def _stop_workers(self) -> None:
        self._stopping = True
        with self._live_lock:
            for process in self._live:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()

    def _run_one(self, spec: RunSpec, artifacts: Path, on_event: OnEvent | None,
                 concurrent_runs: int = 1) -> dict[str, Any]:
        from peftbench.runs.scratch import oom_kills, run_folder

        artifacts.mkdir(parents=True, exist_ok=True)
        with run_folder() as tmp:
            spec_file, result_file = tmp / "spec.json", tmp / "result.json"
            spec_file.write_text(spec.to_json())
            log_path = artifacts / "run.log"
            started = time.monotonic()
            ooms_before = oom_kills()
            with open(log_path, "w") as log:
                process = self._start(spec, [str(spec_file), str(result_file), str(artifacts)], log, tmp,
                                      concurrent_runs)
                try:
                    timed_out = _pump_events(process, spec, started, self.timeout_seconds, on_event)
                finally:
                    self._reap(process)
            if timed_out:
                return crash_record(spec, "timeout", f"run exceeded the {self.timeout_seconds:g} s timeout", started)
            if result_file.is_file():
                return json.loads(result_file.read_text())
            ranked = failure_record(spec, tmp, lambda code: _exit_cause(code, ooms_before, oom_kills()), started)
            if ranked is not None:  # a run over several processes: which rank failed, and how
                return ranked
            tail = " | ".join(log_path.read_text(errors="replace")[-600:].strip().splitlines()[-3:])
            status, how = _exit_cause(process.returncode, ooms_before, oom_kills())
            return crash_record(spec, status, f"worker {how}: {tail}" if tail else f"worker {how}", started)

    def _start(self, spec: RunSpec, args: list[str], log: Any, tmp: Path, concurrent_runs: int) -> subprocess.Popen:
        with self._live_lock:
            if self._stopping:
                raise KeyboardInterrupt("stopping")
            from peftbench.runs.launch import world_size

            # A run over several processes starts torchrun's launcher, which starts its ranks.
            module = "peftbench.runs.launch" if world_size(spec) > 1 else "peftbench.runs.worker"
            process = subprocess.Popen([sys.executable, "-m", module, *args],
                                       stdout=subprocess.PIPE, stderr=log, text=True,
                                       env=_worker_env(spec, concurrent_runs, tmp),
                                       preexec_fn=_die_with_parent if self.die_with_parent else None)
            self._live.add(process)
        return process

    def _reap(self, process: subprocess.Popen) -> None:
        """The worker is gone when this returns (killed if the driver is being interrupted)."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        process.wait()
        assert process.stdout is not None  # workers start with stdout=PIPE
        process.stdout.close()
        with self._live_lock:
            self._live.discard(process)


def run_worker(spec: RunSpec, artifacts: Path, timeout_seconds: float | None, on_event: OnEvent | None,
               concurrent_runs: int = 1, die_with_parent: bool = False) -> dict[str, Any]:
    """Run one spec in a fresh worker process, its stderr in `artifacts/run.log`; return its record (a crash
    record when it died or timed out). Every executor runs its specs through this, wherever it runs them:
    the Ray executor's tasks call it on their node."""
    executor = LocalExecutor(timeout_seconds, 1, die_with_parent=die_with_parent)
    return executor._run_one(spec, artifacts, on_event, concurrent_runs)


def _pump_events(process: subprocess.Popen, spec: RunSpec, started: float, timeout_seconds: float | None,
                 on_event: OnEvent | None) -> bool:
    """Forward the worker's JSON events until it exits; kill it at the timeout. True if timed out."""
    import selectors

    selector = selectors.DefaultSelector()
    assert process.stdout is not None  # workers start with stdout=PIPE
    selector.register(process.stdout, selectors.EVENT_READ)
    while True:
        remaining = None if timeout_seconds is None else timeout_seconds - (time.monotonic() - started)
        if remaining is not None and remaining <= 0:
            process.kill()
            process.wait()
            return True
        if selector.select(timeout=min(remaining, 1.0) if remaining is not None else 1.0):
            line = process.stdout.readline()
            if not line:
                process.wait()
                return False
            if on_event is not None and line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):  # a library printed a brace line
                    on_event(spec, json.loads(line))


def _die_with_parent() -> None:
    """In the forked child, before exec: ask Linux to SIGKILL it when its parent dies (PR_SET_PDEATHSIG)."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _exit_cause(returncode: int, ooms_before: dict[str, int], ooms_after: dict[str, int]) -> tuple[str, str]:
    """(status, how the worker ended) for a worker that left no result. A SIGKILL is `oom` only when the
    kernel counted an OOM kill meanwhile: a user's `kill -9` exits the same way."""
    if returncode >= 0:
        return "failed", f"exited with code {returncode}"
    number = -returncode
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = "an unknown signal"
    if number == signal.SIGKILL:
        grew = [k for k, v in ooms_after.items() if v > ooms_before.get(k, v)]
        if grew:
            return "oom", f"killed by the kernel's OOM killer (signal 9; oom_kill counter grew in {', '.join(grew)})"
        unknown = "" if ooms_after else "; no OOM-kill counter readable here"
        return "failed", f"killed by signal 9 (SIGKILL), not by the OOM killer{unknown}"
    return "failed", f"killed by signal {number} ({name})"


def _worker_env(spec: RunSpec, concurrent_runs: int = 1, tmp: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if tmp is not None:  # whatever the worker and its libraries put in a temporary folder goes with the run's
        env.update(TMPDIR=str(tmp), TEMP=str(tmp), TMP=str(tmp))
    env["PEFTBENCH_CONCURRENT_RUNS"] = str(concurrent_runs)  # recorded: timings measured beside other runs
    threads = str(spec.train.threads)
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, TOKENIZERS_PARALLELISM="false",
               HF_HUB_DISABLE_PROGRESS_BARS="1", TRANSFORMERS_VERBOSITY="error", PYTHONUNBUFFERED="1")
    return env


def crash_record(spec: RunSpec, status: str, error: str, started: float) -> dict[str, Any]:
    fields = base_record(spec)
    fields.update(status=status, error=error, wall_seconds=round(time.monotonic() - started, 3),
                  finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return fields


def failure_record(spec: Any, folder: Path, exit_cause: Any, started: float) -> dict[str, Any] | None:
    """The crash record of a multi-process run whose launcher (`peftbench.runs.launch`) wrote `failure.json`, else
    None. `exit_cause` maps an exit code to (status, how it ended) as for a one-process worker (OOM-kill counters
    included)."""
    from peftbench.runs.launch import FAILURE_FILE, world_size

    path = folder / FAILURE_FILE
    if not path.is_file():
        return None
    failure = json.loads(path.read_text())
    rank, world = failure["rank"], world_size(spec)
    if "error" in failure:
        status, how = failure["status"], f"raised {failure['error']}"
    else:
        status, how = exit_cause(failure["exitcode"])
    fields = crash_record(spec, status, f"rank {rank} of {world} {how}", started)
    fields["failed_rank"] = rank
    fields["rank_exit_codes"] = {str(r): code for r, code in sorted(failure["exits"].items())}
    if "traceback" in failure:
        fields["traceback"] = failure["traceback"]
    return fields
