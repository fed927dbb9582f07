"""One rank of a run over several processes: the same set-up, training step, evaluation and record as a
one-process run (`peftbench.runs.worker`), with the model wrapped for data parallelism.

Started by torchrun's launcher (`peftbench.runs.launch`, which puts RANK, WORLD_SIZE, LOCAL_RANK and the
rendezvous address in the environment) or by Ray Train (`peftbench.runs.ray_train`, which has joined the process
group already). Every rank loads the model and its data, wraps the model — DistributedDataParallel for ddp, FSDP2's
`fully_shard` on each transformer layer and then the whole model for fsdp — and trains on its share of the
micro-batches (`training.rank_batches`) with `training.train`. The ranks' peaks, step times and token counts are
gathered on rank 0, which alone evaluates the trained weights (DDP's replica, or FSDP's shards gathered into a
plain copy of the model), saves what the run keeps and makes the record. The ranks leave the process group before
that evaluation: nothing waits on it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from peftbench.runs.launch import PROCESS_GROUP_TIMEOUT_SECONDS, RANK_ERROR
from peftbench.runs.spec import RunSpec


def run_rank(spec: RunSpec, artifacts: Path) -> dict[str, Any] | None:
    """This rank's part of the run: the record on rank 0, None on the others. Any error propagates (the
    launcher names the rank it came from); a method that does not apply is `skipped` on every rank alike."""
    import torch.distributed as dist

    from peftbench.runs import worker

    joined_here = _join(spec)
    try:
        rank = dist.get_rank()
        fields = worker.execute(spec, artifacts, body=_train_rank, contain_errors=False)
    finally:
        if joined_here and dist.is_initialized():
            dist.destroy_process_group()
    return fields if rank == 0 else None


def _join(spec: RunSpec) -> bool:
    """Join the run's process group (gloo on CPU, NCCL on CUDA) unless Ray Train has; True if joined here."""
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    cuda = spec.device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(_local_rank())
    if dist.is_initialized():
        return False
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=PROCESS_GROUP_TIMEOUT_SECONDS))
    return True


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def _train_rank(spec: RunSpec, artifacts: Path, fields: dict[str, Any]) -> dict[str, Any]:
    import torch
    import torch.distributed as dist

    from peftbench import telemetry, training
    from peftbench.runs import worker

    rank, world, train = dist.get_rank(), dist.get_world_size(), spec.train
    local = dataclasses.replace(spec, device=f"cuda:{_local_rank()}") if spec.device.startswith("cuda") else spec
    torch.set_num_threads(train.threads)
    training.seed_everything(spec.seed)  # the same initial weights on every rank, as FSDP's sharding assumes
    # FSDP moves each rank's shard to the GPU itself: the whole model never has to fit on one.
    layout = spec.processes
    assert layout is not None, "a rank belongs to a run over several processes"
    setup, out = worker.set_up(local, fields, predict=rank == 0, place=layout.strategy != "fsdp")
    model = wrap(setup.model, layout.strategy, layout.offload, local.device, world)
    memory = fields["memory"]
    # Every rank held the whole model before sharding it; the training peak is measured from here (the load's
    # peak is kept beside it).
    memory["peak_rss_load_bytes"] = telemetry.peak_rss()
    memory["rss_peak_reset_after_wrap"] = telemetry.reset_peak_rss()
    memory["rss_before_train_bytes"] = telemetry.current_rss()
    cuda = telemetry.CudaMemory(torch.cuda.current_device()) if local.device.startswith("cuda") else None
    batches = training.rank_batches(training.shuffled_batches(setup.prepared.train_features, train.batch_size,
                                                              setup.prepared.collate, spec.seed), rank, world)
    result = worker.run_training(local, setup, model, batches, on_step=cuda.sample if cuda is not None else None,
                                 mean_over_ranks=_mean_over_ranks(local.device, world), report=rank == 0)
    memory["peak_rss_train_bytes"] = telemetry.peak_rss()
    if cuda is not None:
        memory.update(cuda.report())
    ranks: list[Any] = [None] * world
    dist.all_gather_object(ranks, _rank_facts(rank, memory, result))
    del model
    setup.model = _trained_model(setup, local, rank)
    if rank != 0:
        return {}
    out.update(worker.train_facts(train, result, world))
    out.update(_across_ranks(ranks))
    out.update(worker.finish(local, setup, artifacts, fields))
    return out


def wrap(model: Any, strategy: str, offload: str, device: str, world: int) -> Any:
    """DistributedDataParallel (ddp), or FSDP2 (fsdp): each transformer layer a unit, then the rest as the
    root, as `estimate --strategy fsdp` assumes; `offload=params` is FSDP's CPU offload."""
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        cuda = device.startswith("cuda")
        return DistributedDataParallel(model, device_ids=[int(device.partition(":")[2])] if cuda else None)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

    mesh = init_device_mesh(device.split(":")[0], (world,))
    policy = CPUOffloadPolicy() if offload == "params" else OffloadPolicy()
    for layer in transformer_layers(model):
        fully_shard(layer, mesh=mesh, offload_policy=policy)
    fully_shard(model, mesh=mesh, offload_policy=policy)
    return model


def transformer_layers(model: Any) -> list[Any]:
    """The blocks of the model's layer stack: the ModuleList holding the most parameters (`model.layers` in
    Llama, `encoder.layer` in BERT), whatever the model or its PEFT wrapping calls it."""
    import torch

    stacks = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) > 1]
    if not stacks:
        return []
    largest = max(stacks, key=lambda m: sum(p.numel() for p in m.parameters()))
    return list(largest)


def _mean_over_ranks(device: str, world: int) -> Any:
    import torch
    import torch.distributed as dist

    def mean(value: float) -> float:
        total = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(total)
        return float(total.item()) / world

    return mean


def _rank_facts(rank: int, memory: dict[str, Any], result: Any) -> dict[str, Any]:
    return {"rank": rank, "memory": dict(memory), "train_seconds": round(result.seconds, 3),
            "seconds_per_step": round(result.seconds / result.steps, 4), "train_tokens": result.tokens}


def _across_ranks(ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's training figures from every rank's: tokens summed; time that of the slowest rank (every step
    waits for it)."""
    seconds = max(r["train_seconds"] for r in ranks)
    tokens = sum(r["train_tokens"] for r in ranks)
    return {"ranks": ranks, "train_tokens": tokens, "train_seconds": seconds,
            "seconds_per_step": max(r["seconds_per_step"] for r in ranks),
            "tokens_per_second": round(tokens / seconds, 2) if seconds else 0.0}


def _trained_model(setup: Any, spec: RunSpec, rank: int) -> Any:
    """The trained model as one plain module on rank 0 (None elsewhere): DDP's replica is already whole; FSDP's
    shards are gathered (every rank takes part) into a fresh copy of the model, which evaluation, saving and the
    after-training measurements use exactly as a one-process run's."""
    import gc

    from torch.distributed.tensor import DTensor

    if not any(isinstance(p, DTensor) for p in setup.model.parameters()):
        return setup.model if rank == 0 else None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(setup.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    setup.model = None
    gc.collect()
    if rank != 0:
        return None
    from peftbench import training
    from peftbench.models import load_for_task

    loaded = load_for_task(spec.model, setup.task.kind, setup.prepared.num_labels, spec.train.dtype,
                           setup.method.quantize_4bit, spec.trust_remote_code, tokenizer=setup.tokenizer)
    with training.rng_preserved(cuda=spec.device.startswith("cuda")):  # a method's initialisation, overwritten
        model = setup.method.apply(loaded.model, spec.hyperparameters, setup.ctx)
    model.load_state_dict(state)
    return model.to(spec.device)


def _write_error(folder: Path, rank: int, exc: BaseException) -> None:
    """What this rank raised, for the launcher to name the rank that failed first."""
    from peftbench.runs.worker import failure_status

    error = {"rank": rank, "status": failure_status(exc), "error": f"{type(exc).__name__}: {exc}"[:2000],
             "traceback": traceback.format_exc(limit=8), "time": time.time()}
    (folder / RANK_ERROR.format(rank)).write_text(json.dumps(error))


def main(argv: list[str]) -> int:
    """`python -m peftbench.runs.rank SPEC RESULT ARTIFACTS`, one per rank, started by the launcher."""
    from peftbench.estimate.measure import pin_malloc_threshold
    from peftbench.runs.worker import exit_with_parent

    exit_with_parent()
    pin_malloc_threshold()  # before any allocation, as in the one-process worker
    spec_path, result_path, artifacts = argv
    rank = int(os.environ["RANK"])
    if rank != 0:  # progress events come from rank 0 alone; the others' output goes to the run's log
        sys.stdout = sys.stderr
    spec = RunSpec.from_json(Path(spec_path).read_text())
    try:
        fields = run_rank(spec, Path(artifacts))
    except Exception as exc:
        _write_error(Path(spec_path).parent, rank, exc)
        raise
    if fields is not None:
        tmp = Path(result_path + ".tmp")
        tmp.write_text(json.dumps(fields, default=str))
        tmp.replace(result_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
