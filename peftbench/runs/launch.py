"""Runs that span several processes (`gpus_per_run=N strategy=ddp|fsdp|...`): the options, and the launcher.

One run is N rank processes started by torch's own launcher, torchrun's `elastic_launch` (torch.distributed.run),
on this machine: `python -m peftbench.runs.launch SPEC RESULT ARTIFACTS` is what the local executor starts in
place of the one-process worker. Each rank runs `peftbench.runs.rank`; rank 0 writes the record. When a rank dies
(an exception, an OOM kill, a segfault, SIGKILL), torchrun stops the others and this launcher writes
`failure.json` beside the result: which rank, its exit code and, for an exception, its error. The executor turns
that into the run's `failed` or `oom` record; the suite goes on.

Nothing here imports torch at module level: the plan validates the options before anything loads.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

from peftbench.errors import UserError, shown
from peftbench.vocabulary import OFFLOADS, STRATEGIES, VALID_OFFLOADS

MAX_PROCESSES = 1024
FAILURE_FILE = "failure.json"
RANK_ERROR = "rank{}.error.json"  # what a rank that raised writes before it exits (see rank.main)
# A collective that waits longer than this ends the run instead of hanging it (a rank stuck without dying; one
# that dies is seen by torchrun at once). Long enough for rank 0's extra work between collectives: the
# estimator's trace on a cold cache, a large model's full state dict gathered for evaluation.
PROCESS_GROUP_TIMEOUT_SECONDS = 600
# torchrun's grace between SIGTERM and SIGKILL for the surviving ranks once one has failed.
SHUTDOWN_GRACE_SECONDS = 10


def multi_process_options(values: dict[str, Any], device: str, with_ray: bool) -> dict[str, Any]:
    """`{"world_size": N, "strategy": ..., "offload": ...}` for a run of N > 1 processes, `{}` for the plain
    one-process run; UserError (before anything runs) for anything invalid or not available here."""
    world = values.get("gpus_per_run", 1)
    if not isinstance(world, int) or isinstance(world, bool) or not 1 <= world <= MAX_PROCESSES:
        raise UserError(f"gpus_per_run must be a whole number of processes from 1 to {MAX_PROCESSES}, "
                        f"got {shown(world)}")
    given = [key for key in ("strategy", "offload") if key in values]
    if world == 1:
        if given:
            raise UserError(f"{', '.join(given)} only apply with gpus_per_run=2 or more "
                            "(gpus_per_run=1 is the plain one-process run)")
        return {}
    strategy, offload = values.get("strategy", "ddp"), values.get("offload", "none")
    if strategy not in STRATEGIES:
        raise UserError(f"strategy must be one of {', '.join(STRATEGIES)}, got {shown(strategy)}")
    if offload not in OFFLOADS:
        raise UserError(f"offload must be one of {', '.join(OFFLOADS)}, got {shown(offload)}")
    if offload not in VALID_OFFLOADS[strategy]:
        raise UserError(f"{strategy} cannot offload {offload} (with {strategy}: "
                        f"{', '.join(VALID_OFFLOADS[strategy])}; FSDP's CPU offload moves parameters, gradients "
                        "and optimizer states together)")
    _check_engine(strategy, offload)
    _check_devices(world, device, offload, with_ray)
    return {"world_size": world, "strategy": strategy, "offload": offload}


def _check_engine(strategy: str, offload: str) -> None:
    """ddp and fsdp (FSDP2) come with torch; the ZeRO stages and optimizer offload are DeepSpeed's."""
    if strategy in ("ddp", "fsdp") and offload != "optimizer":
        return
    what = f"strategy={strategy}" + (f" offload={offload}" if offload != "none" else "")
    if importlib.util.find_spec("deepspeed") is None:
        raise UserError(f"{what} needs DeepSpeed, which is not installed (pip install deepspeed); "
                        "ddp and fsdp need only torch")
    raise UserError(f"{what} needs DeepSpeed's engine, which the harness does not drive yet; "
                    "use strategy=fsdp (FSDP2 shards parameters, gradients and optimizer states as ZeRO-3 does)")


def _check_devices(world: int, device: str, offload: str, with_ray: bool) -> None:
    if device == "cpu":
        if offload != "none":
            raise UserError(f"offload={offload} moves state from the GPU to the host: with device=cpu there is "
                            "nothing to offload")
        return
    if device != "cuda":
        raise UserError(f"with gpus_per_run use device=cuda, not {device}: each rank takes a GPU of its own")
    if with_ray:
        return  # Ray places the ranks on the cluster's GPUs
    import torch

    if torch.cuda.device_count() < world:
        raise UserError(f"gpus_per_run={world} needs {world} GPUs on this machine, which has "
                        f"{torch.cuda.device_count()} (executor=ray spreads a run over a cluster's GPUs)")


def world_size(spec: Any) -> int:
    return int(spec.world_size)


# ---- the launcher: `python -m peftbench.runs.launch SPEC RESULT ARTIFACTS` ---------------------------------
def launch(spec_path: str, result_path: str, artifacts: str) -> int:
    """Start the run's ranks through torchrun's launcher and wait for them; 0 when every rank succeeded.
    On a failure, `failure.json` (next to SPEC) says which rank and how."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from peftbench.runs.spec import RunSpec

    spec = RunSpec.from_json(Path(spec_path).read_text())
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=world_size(spec), run_id=spec.run_id,
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0",  # torchrun --standalone's rendezvous
                          max_restarts=0, monitor_interval=0.5, shutdown_timeout=SHUTDOWN_GRACE_SECONDS)
    folder = Path(spec_path).parent
    try:
        elastic_launch(config, sys.executable)("-u", "-m", "peftbench.runs.rank", spec_path, result_path, artifacts)
    except ChildFailedError as exc:
        exits = {rank: failure.exitcode for rank, failure in exc.failures.items()}
        (folder / FAILURE_FILE).write_text(json.dumps(root_cause(exits, folder)))
        return 1
    return 0


def root_cause(exits: dict[int, int], folder: Path) -> dict[str, Any]:
    """The rank that brought the run down, from every failed rank's exit code and error file.

    A rank ended by a signal that torchrun does not send (SIGKILL, SIGSEGV, an OOM kill) is the cause: the
    others fail after it (their collective breaks) or are stopped by torchrun's SIGTERM. Otherwise the rank
    whose exception came first."""
    import signal

    errors = {}
    for rank in exits:
        path = folder / RANK_ERROR.format(rank)
        if path.is_file():
            errors[rank] = json.loads(path.read_text())
    killed = [rank for rank, code in exits.items() if code < 0 and -code != signal.SIGTERM and rank not in errors]
    if killed:
        rank = min(killed)
        return {"rank": rank, "exitcode": exits[rank], "exits": exits}
    if errors:
        rank = min(errors, key=lambda r: errors[r]["time"])
        return {"rank": rank, "exitcode": exits.get(rank, 1), "exits": exits, **errors[rank]}
    rank = min(exits)
    return {"rank": rank, "exitcode": exits[rank], "exits": exits}


def main(argv: list[str]) -> int:
    from peftbench.runs.worker import exit_with_parent

    exit_with_parent()  # the ranks in turn end with this launcher (rank.main)
    started = time.time()
    code = launch(*argv)
    print(f"launcher: ranks done in {time.time() - started:.1f} s, exit {code}", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
