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
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from peftbench.runs.spec import RunSpec, base_record

OnRecord = Callable[[RunSpec, dict[str, Any]], None]
OnEvent = Callable[[RunSpec, dict[str, Any]], None]


class Executor(ABC):
    @abstractmethod
    def execute(self, specs: Iterable[RunSpec], artifacts_dir: Path, on_record: OnRecord,
                on_event: OnEvent | None = None) -> None:
        """Run every spec; call `on_record(spec, record)` once per spec, whatever happened to it."""


class LocalExecutor(Executor):
    def __init__(self, timeout_seconds: float | None = None, jobs: int = 1) -> None:
        self.timeout_seconds = timeout_seconds
        self.jobs = max(1, jobs)

    def execute(self, specs: Iterable[RunSpec], artifacts_dir: Path, on_record: OnRecord,
                on_event: OnEvent | None = None) -> None:
        specs = list(specs)
        if self.jobs == 1 or len(specs) < 2:
            for spec in specs:
                on_record(spec, self._run_one(spec, artifacts_dir / spec.run_id, on_event))
            return
        self._execute_parallel(specs, artifacts_dir, on_record, on_event)

    def _execute_parallel(self, specs: list[RunSpec], artifacts_dir: Path, on_record: OnRecord,
                          on_event: OnEvent | None) -> None:
        """Threads only wait on worker processes; records and events reach the caller one at a time."""
        import threading
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        lock = threading.Lock()

        def locked_event(spec: RunSpec, event: dict[str, Any]) -> None:
            if on_event is not None:
                with lock:
                    on_event(spec, event)

        jobs = min(self.jobs, len(specs))
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            running = {pool.submit(self._run_one, spec, artifacts_dir / spec.run_id, locked_event, jobs): spec
                       for spec in specs}
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    spec = running.pop(future)
                    with lock:
                        on_record(spec, future.result())

    def _run_one(self, spec: RunSpec, artifacts: Path, on_event: OnEvent | None,
                 concurrent_runs: int = 1) -> dict[str, Any]:
        return run_worker(spec, artifacts, self.timeout_seconds, on_event, concurrent_runs)


def run_worker(spec: RunSpec, artifacts: Path, timeout_seconds: float | None, on_event: OnEvent | None,
               concurrent_runs: int = 1, die_with_parent: bool = False) -> dict[str, Any]:
    """Run one spec in a fresh worker process, its stderr in `artifacts/run.log`; return its record (a crash
    record when it died or timed out). Every executor runs its specs through this, wherever it runs them.

    `die_with_parent`: the worker is SIGKILLed when the calling thread's process dies (Linux), so a killed
    Ray worker does not leave an orphaned run training on a node.
    """
    artifacts.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="peftbench-run-") as tmp:
        spec_file, result_file = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_file.write_text(spec.to_json())
        log_path = artifacts / "run.log"
        started = time.monotonic()
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "peftbench.runs.worker", str(spec_file), str(result_file), str(artifacts)],
                stdout=subprocess.PIPE, stderr=log, text=True, env=_worker_env(spec, concurrent_runs),
                preexec_fn=_die_with_parent if die_with_parent else None)
            timed_out = _pump_events(process, spec, started, timeout_seconds, on_event)
        if timed_out:
            return crash_record(spec, "timeout", f"run exceeded the {timeout_seconds:g} s timeout", started)
        if result_file.is_file():
            return json.loads(result_file.read_text())
        tail = log_path.read_text()[-600:].strip().splitlines()[-3:]
        return crash_record(spec, "oom" if process.returncode == -9 else "failed",
                            f"worker exited with code {process.returncode}: {' | '.join(tail)}", started)


def _pump_events(process: subprocess.Popen, spec: RunSpec, started: float, timeout_seconds: float | None,
                 on_event: OnEvent | None) -> bool:
    """Forward the worker's JSON events until it exits; kill it at the timeout. True if timed out."""
    import selectors

    selector = selectors.DefaultSelector()
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


def _worker_env(spec: RunSpec, concurrent_runs: int = 1) -> dict[str, str]:
    env = dict(os.environ)
    env["PEFTBENCH_CONCURRENT_RUNS"] = str(concurrent_runs)  # recorded: timings measured beside other runs
    threads = str(spec.train.get("threads", 1))
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, TOKENIZERS_PARALLELISM="false",
               HF_HUB_DISABLE_PROGRESS_BARS="1", TRANSFORMERS_VERBOSITY="error", PYTHONUNBUFFERED="1")
    return env


def crash_record(spec: RunSpec, status: str, error: str, started: float) -> dict[str, Any]:
    record = base_record(spec)
    record.update(status=status, error=error, wall_seconds=round(time.monotonic() - started, 3),
                  finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return record
