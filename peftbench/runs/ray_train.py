"""`executor=ray` for a run over several processes (`gpus_per_run=N`): one Ray Train `TorchTrainer` per run.

The Ray executor submits this module's task for such a run instead of its one-process task. The task starts a
TorchTrainer of N workers — Ray Train reserves them in one placement group (N bundles of the run's threads, plus a
GPU each with `device=cuda`) and joins them in a torch process group (gloo or NCCL, with a timeout) — and each
worker runs the same rank code as under torchrun (`peftbench.runs.rank.run_rank`). Rank 0's progress events and
its record (with the run's files, as the one-process task returns them) come back through a Ray queue; the task
yields them in the one-process task's protocol, so the executor's driver, records and resume are unchanged.

Faults: Ray Train's own failure handling, with no retries (`FailureConfig(max_failures=0)`): a worker that raises
or dies ends `fit()` with the failed ranks, and the task returns a `failed` (or `oom`) record naming the rank. The
task runs in a Ray worker that exits after it (`max_calls=1`): the trainer's controller and workers, which that
worker owns, end with it, on a timeout or a cancelled run as well.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from peftbench.runs.executor import crash_record
from peftbench.runs.launch import PROCESS_GROUP_TIMEOUT_SECONDS, world_size
from peftbench.runs.spec import RunSpec

POLL_SECONDS = 0.5


def remote_task(ray: Any) -> Any:
    """The task, run by a Ray worker that exits after it (its trainer goes with it)."""
    return ray.remote(max_calls=1)(run_trainer_task)


def task_options(spec: RunSpec) -> dict[str, Any]:
    """The task itself only waits on the trainer: it takes no CPU from the ranks."""
    return {"num_cpus": 0, "max_retries": 0, "num_returns": "streaming",
            "name": f"peftbench {spec.label()} x{world_size(spec)}"}


def run_trainer_task(spec_json: str, timeout: float | None, shared_dir: str,
                     concurrent_runs: int) -> Iterator[tuple[Any, ...]]:
    """The Ray task (a streaming generator): ("events", [...]) batches, then ("result", record, files or None)."""
    from ray.util.queue import Queue

    spec = RunSpec.from_json(spec_json)
    channel = Queue(actor_options={"num_cpus": 0})  # holds no CPU the ranks need
    outcome: dict[str, Any] = {}
    started = time.monotonic()

    def fit() -> None:
        try:
            _trainer(spec, channel, shared_dir, concurrent_runs).fit()
        except Exception as exc:  # reported below as the run's record
            outcome["error"] = exc

    thread = threading.Thread(target=fit, name="peftbench-trainer", daemon=True)
    thread.start()
    result = None
    while result is None and (thread.is_alive() or not channel.empty()):
        thread.join(POLL_SECONDS)
        for item in channel.get_nowait_batch(channel.qsize()) if channel.qsize() else []:
            if item[0] == "result":
                result = item
            else:
                yield item
        if timeout is not None and time.monotonic() - started > timeout and result is None:
            yield ("result", crash_record(spec, "timeout", f"run exceeded the {timeout:g} s timeout", started), None)
            return  # this worker exits (max_calls=1), and the trainer it owns with it
    if result is None:
        status, error, rank = failure(outcome.get("error"), world_size(spec))
        fields = crash_record(spec, status, error, started)
        if rank is not None:
            fields["failed_rank"] = rank
        result = ("result", fields, None)
    yield result


def _trainer(spec: RunSpec, channel: Any, shared_dir: str, concurrent_runs: int) -> Any:
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from peftbench.cache import cache_root

    cuda = spec.device.startswith("cuda")
    resources = {"CPU": spec.train.threads, **({"GPU": 1} if cuda else {})}
    storage = shared_dir or str(cache_root() / "ray-train")
    return TorchTrainer(
        _train_loop, train_loop_config={"spec": spec.to_json(), "channel": channel, "shared_dir": shared_dir,
                                        "concurrent_runs": concurrent_runs},
        torch_config=TorchConfig(backend="nccl" if cuda else "gloo", timeout_s=PROCESS_GROUP_TIMEOUT_SECONDS),
        scaling_config=ScalingConfig(num_workers=world_size(spec), use_gpu=cuda, resources_per_worker=resources),
        run_config=RunConfig(name=f"peftbench-{spec.run_id}-{int(time.time())}", storage_path=storage,
                             failure_config=FailureConfig(max_failures=0)))


def failure(error: BaseException | None, world: int) -> tuple[str, str, int | None]:
    """(status, message, failed rank or None) from what `fit()` raised. A worker whose process died is the
    cause over ranks whose collective broke after it."""
    import ray

    if error is None:
        return "failed", "ray train: the trainer ended without a record", None
    failures = getattr(error, "worker_failures", None) or {}
    if not failures:
        return "failed", f"ray train: {type(error).__name__}: {_one_line(error)}", None
    died = [rank for rank, exc in failures.items() if isinstance(exc, ray.exceptions.RayActorError)]
    rank = min(died or failures)
    exc = failures[rank]
    text = f"{type(exc).__name__}: {_one_line(exc)}"
    oom = isinstance(exc, ray.exceptions.OutOfMemoryError) or "OutOfMemoryError" in text or "MemoryError" in text
    return ("oom" if oom else "failed"), f"rank {rank} of {world} (ray train) failed: {text}", rank


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:400]


class _EventStream(io.TextIOBase):
    """Rank 0's stdout under Ray Train: its JSON event lines go to the driver through the queue."""

    def __init__(self, channel: Any) -> None:
        super().__init__()
        self.channel, self.pending = channel, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        events = []
        for line in lines:
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):  # a library printed a brace line
                    events.append(json.loads(line))
        if events:
            self.channel.put(("events", events))
        return len(text)


def _train_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: the run's rank; rank 0 sends its record and files back through the queue."""
    import os

    import ray.train

    from peftbench.cache import cache_root
    from peftbench.estimate.measure import pin_malloc_threshold
    from peftbench.runs.rank import run_rank
    from peftbench.runs.ray_node import NODE_ARTIFACTS, collect_artifacts, node_identity

    pin_malloc_threshold()  # as early as this long-lived worker allows (see the one-process worker)
    os.environ["PEFTBENCH_CONCURRENT_RUNS"] = str(config["concurrent_runs"])
    spec = RunSpec.from_json(config["spec"])
    rank = ray.train.get_context().get_world_rank()
    sys.stdout = _EventStream(config["channel"]) if rank == 0 else sys.stderr
    node_dir = cache_root() / NODE_ARTIFACTS / spec.run_id
    if rank == 0:
        shutil.rmtree(node_dir, ignore_errors=True)
    fields = run_rank(spec, node_dir)
    if fields is not None:
        fields["ray"] = {**node_identity(), "train_workers": world_size(spec)}
        shared = Path(config["shared_dir"]) if config["shared_dir"] else None
        config["channel"].put(("result", fields, collect_artifacts(fields, node_dir, shared)))
