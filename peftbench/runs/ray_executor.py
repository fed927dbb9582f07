"""`executor=ray`: hand each run to a Ray cluster as one task; records come back to this process.

Each run is one Ray task that asks for what the run needs (`num_cpus` = the run's threads, plus
`num_gpus=1` on CUDA) and runs the same worker subprocess as the local executor (`run_worker`), so a crash,
OOM or segfault stays inside the run and the subprocess's peak memory is the run's alone. The task streams
the worker's progress events back in batches, then one item with the record and, when they are small, the
run's files (adapter, run.log). This process appends every record: it stays the only writer of runs.jsonl,
so resume, `--force`, progress bars and the summary are the runner's, unchanged.

Faults: a task whose Ray worker or node dies is retried `ray_retries` times (default 0), then recorded
`failed` with the Ray error; the suite goes on. Ctrl-C cancels every outstanding task (force: the Ray worker
is killed, and its run subprocess with it, see `run_worker(die_with_parent=True)`). A SIGKILLed driver
records nothing more; Ray ends the dead job's tasks, and a rerun runs exactly what has no record.

Ray is imported only inside `execute` and the task, so the rest of peftbench never needs it installed.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftbench.errors import UserError, shown
from peftbench.record import RunRecord
from peftbench.runs.executor import Executor, OnEvent, OnRecord, crash_record, run_worker
from peftbench.runs.launch import world_size
from peftbench.runs.ray_node import NODE_ARTIFACTS, collect_artifacts, node_identity
from peftbench.runs.spec import RunSpec

INSTALL_HINT = 'executor=ray needs Ray, which is not installed: pip install "peftbench[ray]"'
# A run's files travel back through Ray's object store up to this size (a LoRA adapter of a 7B model is
# ~20-160 MiB; full fine-tuned weights are not); larger ones stay on the node unless `artifacts_dir=` is shared.
EVENT_INTERVAL_SECONDS = 0.5  # progress events are batched: one object per run per interval, not per step
_ADDRESS = re.compile(r"[A-Za-z0-9_.\-\[\]:]+:\d{1,5}")


@dataclass(frozen=True)
class RayOptions:
    """The `executor=ray` settings, validated by `ray_options` before anything runs."""

    address: str | None = None  # None: a local Ray instance sized to this machine; "auto" or HOST:PORT
    retries: int = 0  # resubmissions of a run whose Ray worker or node died
    artifacts_dir: Path | None = None  # a folder every node and this machine share; None: files travel back
    max_in_flight: int | None = None  # `jobs=N` given: at most N runs at once; else Ray's resources decide


def ray_options(values: dict[str, Any], device: str) -> RayOptions | None:
    """The Ray settings from the overrides (None for `executor=local`); UserError on anything invalid."""
    executor = values.get("executor", "local")
    if executor not in ("local", "ray"):
        raise UserError(f"executor must be local or ray, got {shown(executor)}")
    ray_keys = [key for key in ("ray_address", "ray_retries", "artifacts_dir") if key in values]
    if executor == "local":
        if ray_keys:
            raise UserError(f"{', '.join(ray_keys)} only apply with executor=ray")
        return None
    if importlib.util.find_spec("ray") is None:
        raise UserError(INSTALL_HINT)
    if device.startswith("cuda:"):
        raise UserError(f"with executor=ray use device=cuda, not {device}: Ray gives each run one GPU of its own")
    address = values.get("ray_address")
    if address is not None and not _valid_address(address):
        raise UserError(f"ray_address must be auto or HOST:PORT (a running cluster's head), got {shown(address)}")
    retries = values.get("ray_retries", 0)
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise UserError(f"ray_retries must be a non-negative integer, got {shown(retries)}")
    shared = values.get("artifacts_dir")
    if shared is not None:
        shared = Path(str(shared)).expanduser().resolve()
        if not shared.is_dir():
            raise UserError(f"artifacts_dir={shared} is not a directory: name a folder every Ray node can write")
    jobs = values.get("jobs")
    return RayOptions(address, retries, shared, jobs if isinstance(jobs, int) else None)


def _valid_address(address: Any) -> bool:
    """`auto`, or HOST:PORT with a port a socket can name (a port past 65535 would fail inside the connect)."""
    if address == "auto":
        return True
    if not (isinstance(address, str) and _ADDRESS.fullmatch(address)):
        return False
    return 1 <= int(address.rpartition(":")[2]) <= 65535


@dataclass
class _Attempt:
    spec: RunSpec
    number: int  # 1 for the first submission
    started: float


class RayExecutor(Executor):
    def __init__(self, options: RayOptions, timeout_seconds: float | None = None) -> None:
        self.options = options
        self.timeout_seconds = timeout_seconds

    def execute(self, specs: Iterable[RunSpec], artifacts_dir: Path, on_record: OnRecord,
                on_event: OnEvent | None = None) -> None:
        if isinstance(specs, Sized) and not len(specs):
            return
        try:
            import ray
        except ImportError:
            raise UserError(INSTALL_HINT) from None
        # Connected before `specs` is iterated: iterating claims each run (runner._Claimed), and a cluster that
        # cannot be reached must leave no claim behind.
        started_here = _connect(ray, self.options.address)
        try:
            specs = list(specs)
            if specs:
                _Driver(ray, self, specs, artifacts_dir, on_record, on_event).run()
        finally:
            if started_here:
                ray.shutdown()


def _connect(ray: Any, address: str | None) -> bool:
    """Attach to `address`, or start a local instance; True if this call started or attached (and so must
    shut down). An already initialised Ray (a test, a notebook) is used as it is."""
    if ray.is_initialized():
        return False
    if address is None:
        temp_dir = _local_temp_dir()
        try:
            ray.init(include_dashboard=False, log_to_driver=False, **({"_temp_dir": temp_dir} if temp_dir else {}))
        except (OSError, RuntimeError) as exc:
            raise UserError(f"cannot start a local Ray instance: {_first_line(exc)}") from None
        return True
    if address != "auto":
        _check_head_answers(address)
    try:
        ray.init(address=address, log_to_driver=False)
    except (ConnectionError, TimeoutError, RuntimeError) as exc:
        raise UserError(f"cannot attach to a Ray cluster at ray_address={address}: {_first_line(exc)}") from None
    return True


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


# Ray retries an unanswered head for minutes; a head that is up answers a TCP connect and its gRPC (HTTP/2)
# greeting within milliseconds, so this long is ample and keeps a wrong address to one line in seconds.
HEAD_ANSWER_SECONDS = 10.0
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + empty SETTINGS
_HTTP2_SETTINGS = 4


def _check_head_answers(address: str) -> None:
    """UserError unless something at HOST:PORT accepts a connection and greets as a gRPC server does (a Ray
    head's GCS): `ray.init` would otherwise wait for minutes on a closed port, or on the dashboard's HTTP port
    given for the GCS one. With Ray's TLS on, the greeting is encrypted and only the connection is checked."""
    import os
    import socket

    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=HEAD_ANSWER_SECONDS) as sock:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return
            sock.sendall(_HTTP2_PREFACE)
            greeting = sock.recv(9)
    except OSError as exc:
        raise UserError(f"no Ray cluster answers at ray_address={address}: {exc.strerror or exc} (start one "
                        "with `ray start --head`, or give its head's address, port 6379 by default)") from None
    if len(greeting) < 9 or greeting[3] != _HTTP2_SETTINGS:
        raise UserError(f"ray_address={address} answers, but not as a Ray head (its GCS speaks gRPC, port 6379 "
                        "by default; 8265 is the dashboard)")


# A local Ray keeps its sockets under its temp folder, at up to ~70 bytes past it
# ("/ray/session_<date>_<time>_<micro>_<pid>/sockets/plasma_store"), and Unix socket paths stop at 107.
_SOCKET_PATH_MAX, _SOCKET_TAIL = 107, 72


def _local_temp_dir() -> str | None:
    """None where Ray's own temp folder ($RAY_TMPDIR, else $TMPDIR, else /tmp) leaves room for its socket
    paths; else a short per-user folder under /tmp. A $RAY_TMPDIR set that long is the user's to shorten."""
    import os

    root = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    if len(root.encode()) + _SOCKET_TAIL <= _SOCKET_PATH_MAX:
        return None
    if os.environ.get("RAY_TMPDIR"):
        raise UserError(f"RAY_TMPDIR={shown(root)} is too long for Ray's socket paths (at most "
                        f"{_SOCKET_PATH_MAX - _SOCKET_TAIL} characters): set a shorter one")
    short = f"/tmp/peftbench-ray-{os.getuid()}"
    try:
        os.makedirs(short, mode=0o700, exist_ok=True)
        owner = os.stat(short).st_uid
    except OSError as exc:
        raise UserError(f"$TMPDIR is too long for Ray's socket paths and {short} cannot be made: "
                        f"{exc.strerror or exc}") from None
    if owner != os.getuid():  # another user's folder: their sockets, not ours to share
        raise UserError(f"$TMPDIR is too long for Ray's socket paths and {short} belongs to another user: "
                        "set a shorter TMPDIR or RAY_TMPDIR")
    return short


class _Driver:
    """Submits tasks (at most `max_in_flight` at once), forwards their events and lands their results, all
    from this one thread: records and events reach the runner one at a time."""

    def __init__(self, ray: Any, executor: RayExecutor, specs: list[RunSpec], artifacts_dir: Path,
                 on_record: OnRecord, on_event: OnEvent | None) -> None:
        self.ray, self.options, self.timeout = ray, executor.options, executor.timeout_seconds
        self.queue = deque(specs)
        self.artifacts_dir, self.on_record, self.on_event = artifacts_dir, on_record, on_event
        self.cap = min(self.options.max_in_flight or len(specs), len(specs))
        self.running: dict[Any, _Attempt] = {}
        self.nodes: list[dict[str, float]] | None = None
        self.task = ray.remote(_run_task)

    def run(self) -> None:
        try:
            while self.queue or self.running:
                while self.queue and len(self.running) < self.cap:
                    self._submit(self.queue.popleft(), 1)
                ready, _ = self.ray.wait(list(self.running), num_returns=1, timeout=1.0)
                for generator in ready:
                    self._advance(generator)
        except BaseException:  # Ctrl-C (or a bug here): no task may outlive the driver's interest in it
            for generator in self.running:
                self.ray.cancel(generator, force=True)
            raise

    def _submit(self, spec: RunSpec, number: int) -> None:
        threads = spec.train.threads
        cuda = spec.device.startswith("cuda")
        options = {"num_cpus": threads, "num_gpus": 1 if cuda else 0, "max_retries": 0,
                   "num_returns": "streaming", "name": f"peftbench {spec.label()}"}
        task = self.task
        if world_size(spec) > 1:  # a run over several processes: a Ray Train trainer of its own
            from peftbench.runs import ray_train

            task, options = ray_train.remote_task(self.ray), ray_train.task_options(spec)
        generator = task.options(**options).remote(
            spec.to_json(), self.timeout, str(self.options.artifacts_dir or ""), self._runs_per_node(threads, cuda))
        self.running[generator] = _Attempt(spec, number, time.monotonic())

    def _runs_per_node(self, threads: int, cuda: bool) -> int:
        """How many runs may share a node (recorded: timings measured beside other runs)."""
        if self.nodes is None:  # asked once: the cluster's size, not its momentary load
            self.nodes = [node["Resources"] for node in self.ray.nodes() if node["Alive"]]
        fits = [int(r.get("CPU", 0)) // threads if not cuda else min(int(r.get("CPU", 0)) // threads,
                                                                        int(r.get("GPU", 0)))
                for r in self.nodes]
        return max(1, min(self.cap, max(fits, default=1)))

    def _advance(self, generator: Any) -> None:
        attempt = self.running[generator]
        try:
            item = self.ray.get(next(generator))
        except StopIteration:  # cannot happen: a task ends with its result or raises
            del self.running[generator]
            self._record(attempt, crash_record(attempt.spec, "failed", "ray: the task ended without a result",
                                               attempt.started))
            return
        except self.ray.exceptions.RayError as exc:
            del self.running[generator]
            self._failed(attempt, exc)
            return
        if item[0] == "events":
            if self.on_event is not None:
                for event in item[1]:
                    self.on_event(attempt.spec, event)
            return
        del self.running[generator]
        _, fields, files = item
        record = RunRecord.new(fields)  # the worker's fields, typed once they reach the driver
        if files is not None:
            record = _land(record, files, self.artifacts_dir / attempt.spec.run_id)
        self._record(attempt, record)

    def _failed(self, attempt: _Attempt, exc: Exception) -> None:
        """A system failure (worker or node died, object lost) is retried; an error raised by the task's
        own code is not (it would fail again)."""
        errors = self.ray.exceptions
        system = not isinstance(exc, (errors.RayTaskError, errors.TaskCancelledError))
        if system and attempt.number <= self.options.retries:
            self._submit(attempt.spec, attempt.number + 1)
            return
        message = " ".join(str(exc).split())[:400]
        self._record(attempt, crash_record(attempt.spec, "failed", f"ray: {type(exc).__name__}: {message}",
                                           attempt.started))

    def _record(self, attempt: _Attempt, record: RunRecord | dict[str, Any]) -> None:
        from peftbench.telemetry import machine_id

        record = record if isinstance(record, RunRecord) else RunRecord.new(record)
        # recorded_by: resume on this machine skips the run, wherever it ran
        self.on_record(attempt.spec, record.replaced(ray={**(record.ray or {}), "attempts": attempt.number},
                                                     recorded_by=machine_id()))


def _land(record: RunRecord, files: dict[str, bytes], dest: Path) -> RunRecord:
    """Write a run's returned files into the results' artifacts folder; the record, pointed at them."""
    shutil.rmtree(dest, ignore_errors=True)
    for relative, data in files.items():
        path = dest / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    moved = {"adapter_path": str(dest)} if record.adapter_path else {}
    return record.replaced(artifacts={**(record.artifacts or {}), "path": str(dest)}, **moved)


def _run_task(spec_json: str, timeout: float | None, shared_dir: str,
              concurrent_runs: int) -> Iterator[tuple[Any, ...]]:
    """The Ray task (a streaming generator): run the worker subprocess in a thread, yield its events in
    batches, then ("result", record, files or None)."""
    import queue
    import threading

    from peftbench.cache import cache_root

    spec = RunSpec.from_json(spec_json)
    node_dir = cache_root() / NODE_ARTIFACTS / spec.run_id
    shutil.rmtree(node_dir, ignore_errors=True)
    events: queue.SimpleQueue = queue.SimpleQueue()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["record"] = run_worker(spec, node_dir, timeout, lambda _spec, event: events.put(event),
                                           concurrent_runs, die_with_parent=True)
        except BaseException as exc:  # re-raised in the task's thread below, so Ray reports it
            outcome["error"] = exc

    thread = threading.Thread(target=work, name="peftbench-run", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(EVENT_INTERVAL_SECONDS)
        batch = _drain(events)
        if batch:
            yield ("events", batch)
    if "error" in outcome:
        raise outcome["error"]
    fields = outcome["record"]
    fields["ray"] = node_identity()
    yield ("result", fields, collect_artifacts(fields, node_dir, Path(shared_dir) if shared_dir else None))


def _drain(events: Any) -> list[dict[str, Any]]:
    batch = []
    while not events.empty():
        batch.append(events.get())
    return batch
