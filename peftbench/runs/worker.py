"""Execute one run inside its own process: load, wrap, train, evaluate, save, measure.

Invoked by the executor as `python -m peftbench.runs.worker SPEC.json RESULT.json ARTIFACTS_DIR`.
Progress goes to stdout as one JSON event per line; the result record goes to RESULT.json.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftbench.errors import MethodNotApplicable
from peftbench.runs.spec import RunSpec, base_record

if TYPE_CHECKING:  # torch and transformers load inside the run, after the worker has started reporting
    from torch import nn
    from transformers import PreTrainedTokenizerBase

    from peftbench.methods import Method, MethodContext
    from peftbench.suites import TaskSpec, TrainConfig
    from peftbench.tasks import PreparedTask, TaskKind


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def execute(spec: RunSpec, artifacts: Path, body: Callable[..., dict[str, Any]] | None = None,
            contain_errors: bool = True) -> dict[str, Any]:
    """Run and return the record's fields (a plain dict, as the worker writes it to RESULT.json; the driver stores
    it as a peftbench.record.RunRecord); errors become a status and message. `body` (default: the
    one-process run) trains and evaluates; a rank of a multi-process run passes its own, with
    `contain_errors=False`: its errors end the rank, and the launcher names the rank that failed."""
    from peftbench import telemetry

    fields = base_record(spec)
    fields["memory"] = {"rss_at_start_bytes": telemetry.current_rss()}
    started = time.time()
    try:
        fields.update((body or _train_and_evaluate)(spec, artifacts, fields))
        fields["status"] = "ok"
    except MethodNotApplicable as exc:
        from peftbench.methods import get_method

        fields.update(status="skipped", error=str(exc), applicability=get_method(spec.method).applicability)
    except Exception as exc:
        if not contain_errors:
            raise
        fields.update(status=failure_status(exc), error=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc(limit=8))
    fields["memory"]["peak_rss_bytes"] = telemetry.peak_rss()
    fields["wall_seconds"] = round(time.time() - started, 3)
    fields["device"] = telemetry.device_info(spec.device, spec.train.threads)
    fields["versions"] = telemetry.library_versions()
    fields["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return fields


def failure_status(exc: BaseException) -> str:
    import torch

    return "oom" if isinstance(exc, (torch.OutOfMemoryError, MemoryError)) else "failed"


@dataclass
class _Setup:
    """Everything loaded before training: the wrapped model, its tokenizer, the task and its data."""

    model: nn.Module  # the base model wrapped by the method
    tokenizer: PreTrainedTokenizerBase
    task: TaskSpec
    kind: TaskKind
    method: Method
    ctx: MethodContext
    prepared: PreparedTask


def _applicable(spec: RunSpec, fields: dict[str, Any]) -> tuple[Any, Any, Any, Any, Any]:
    """(task, task kind, method, model config, method context), or MethodNotApplicable: decided from the
    config alone, before any weights or data load."""
    from peftbench.methods import MethodContext, get_method
    from peftbench.models.catalogue import architecture_family
    from peftbench.models.loading import allow_remote_model, load_config
    from peftbench.tasks import TASK_KINDS

    task = spec.task
    method = get_method(spec.method)
    config, _, _ = load_config(spec.model, spec.trust_remote_code)
    allow_remote_model(config, task.kind, spec.trust_remote_code)  # the estimator builds it without the flag
    ctx = MethodContext(architecture_family(config), config.model_type, task.kind, spec.device,
                        decodes=task.kind == "generation")
    fields.update(architecture=ctx.architecture, model_type=ctx.model_type, family=method.family)
    reason = method.not_applicable_reason(ctx)
    if reason:
        raise MethodNotApplicable(reason)
    return task, TASK_KINDS[task.kind], method, config, ctx


def set_up(spec: RunSpec, fields: dict[str, Any], predict: bool = True, place: bool = True
            ) -> tuple[_Setup, dict[str, Any]]:
    """Load and wrap. `predict`: record the estimator's prediction (rank 0 of a multi-process run only);
    `place`: move the model to the device (FSDP moves only each rank's shard there)."""
    from peftbench import training
    from peftbench.data import load_task_data
    from peftbench.methods import count_parameters
    from peftbench.models import load_for_task
    from peftbench.models.catalogue import resolve_model
    from peftbench.models.loading import load_tokenizer

    task, kind, method, config, ctx = _applicable(spec, fields)
    emit("phase", name="load")
    data = load_task_data(task, spec.scale)
    if spec.tune is not None and spec.tune["role"] == "sweep":
        from peftbench.runs.tuning import sweep_data

        data = sweep_data(data, spec.tune)  # train on the rest of the training rows, score on the validation rows
    model_path, _ = resolve_model(spec.model)
    tokenizer = load_tokenizer(model_path, ctx.architecture, spec.trust_remote_code)
    prepared = kind.prepare(task, tokenizer, data.train, data.eval)
    with training.rng_preserved(cuda=spec.device.startswith("cuda")):  # warm or cold cache: the same run
        prediction = _predict(config, spec, task, prepared) if predict else None

    import gc

    import peft  # noqa: F401  (imported before the baseline, as the estimator's calibration runs assume)

    from peftbench import telemetry

    gc.collect()
    # The estimator predicts RSS growth from here: libraries imported, data tokenised, no weights yet.
    fields["memory"]["rss_before_load_bytes"] = telemetry.current_rss()
    fields["memory"]["rss_peak_reset"] = telemetry.reset_peak_rss()  # peak_rss_train covers load + training
    loaded = load_for_task(spec.model, task.kind, kind.num_labels(task, data.train), spec.train.dtype,
                           method.quantize_4bit, spec.trust_remote_code, tokenizer=tokenizer)
    model = method.apply(loaded.model, spec.hyperparameters, ctx)
    if place:
        model = model.to(spec.device)
    if spec.train.gradient_checkpointing:
        from peftbench.training import enable_gradient_checkpointing

        enable_gradient_checkpointing(model, method.name)
    trainable, total = count_parameters(model)
    facts = {"model_source": loaded.source, "trainable_params": trainable, "total_params": total,
             "prediction": prediction,
             "trainable_percent": round(100.0 * trainable / total, 4), "train_examples": len(data.train),
             "eval_examples": len(data.eval), "mean_input_tokens": round(prepared.mean_input_tokens, 2),
             "mean_target_tokens": round(prepared.mean_target_tokens, 2)}
    from peftbench.informativeness import eval_baselines

    baselines = eval_baselines(prepared)  # chance and majority-class scores, to judge whether a task informs
    if baselines:
        facts["eval_baselines"] = baselines
    return _Setup(model, loaded.tokenizer, task, kind, method, ctx, prepared), facts


def _train_and_evaluate(spec: RunSpec, artifacts: Path, fields: dict[str, Any]) -> dict[str, Any]:
    import torch

    from peftbench import telemetry, training

    torch.set_num_threads(spec.train.threads)
    training.seed_everything(spec.seed)
    setup, out = set_up(spec, fields)

    fields["memory"]["rss_before_train_bytes"] = telemetry.current_rss()
    cuda = telemetry.CudaMemory() if spec.device.startswith("cuda") else None
    batches = training.shuffled_batches(setup.prepared.train_features, spec.train.batch_size,
                                        setup.prepared.collate, spec.seed)
    result = run_training(spec, setup, setup.model, batches, on_step=cuda.sample if cuda is not None else None)
    fields["memory"]["peak_rss_train_bytes"] = telemetry.peak_rss()
    if cuda is not None:
        fields["memory"].update(cuda.report())
    out.update(train_facts(spec.train, result))
    out.update(finish(spec, setup, artifacts, fields))
    return out


def run_training(spec: RunSpec, setup: _Setup, model: nn.Module, batches: Any,
                 on_step: Callable[[], None] | None = None, mean_over_ranks: Callable[[float], float] | None = None,
                 report: bool = True) -> Any:
    """`training.train` with the run's optimizer and schedule; `model` is `setup.model` or its data-parallel
    wrapper (the method's step hook still gets the method's own model). `report`: emit progress events."""
    from peftbench import training

    train = spec.train
    assert train.learning_rate is not None  # a planned spec's rate is resolved (runs.plan)
    optimizer, scheduler = training.make_optimizer(model, train.learning_rate, train.weight_decay,
                                                   train.max_steps, train.warmup_ratio)
    hook = setup.method.step_hook
    if hook is not None and model is not setup.model:
        method_hook = hook

        def hook(_wrapper: Any, step: int) -> None:  # AdaLoRA's allocation reads the PEFT model, not DDP's
            method_hook(setup.model, step)
    if report:
        emit("phase", name="train", total=train.max_steps)

    def step_done(step: int, loss: float) -> None:
        if on_step is not None:
            on_step()
        if report:
            emit("step", step=step + 1, total=train.max_steps, loss=round(loss, 4))

    return training.train(model, batches, optimizer, scheduler, train.max_steps, train.max_grad_norm,
                          spec.device, hook, step_done, train.gradient_accumulation_steps,
                          mean_over_ranks)


def train_facts(train: TrainConfig, result: Any, world_size: int = 1) -> dict[str, Any]:
    """The record's training fields from `training.train`'s result."""
    accumulation = train.gradient_accumulation_steps
    return dict(train_seconds=round(result.seconds, 3), steps=result.steps, train_tokens=result.tokens,
                tokens_per_second=round(result.tokens_per_second, 2),
                seconds_per_step=round(result.seconds / result.steps, 4), train_loss_curve=result.loss_curve,
                final_train_loss=result.loss_curve[-1][1], micro_batch_size=train.batch_size,
                gradient_accumulation_steps=accumulation,
                effective_batch_size=train.batch_size * accumulation * world_size,
                gradient_checkpointing=train.gradient_checkpointing)


def finish(spec: RunSpec, setup: _Setup, artifacts: Path, fields: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the trained `setup.model`, save what the run keeps, then the after-training measurements."""
    emit("phase", name="eval")
    eval_start = time.perf_counter()
    evaluation = setup.kind.evaluate(setup.model, setup.tokenizer, setup.task, setup.prepared,
                                     spec.train.eval_batch_size)
    out: dict[str, Any] = {"metrics": evaluation.metrics}
    out["eval_rows"] = {"metric": evaluation.row_metric, "scores": [round(x, 3) for x in evaluation.row_scores]}
    out["eval_seconds"] = round(time.perf_counter() - eval_start, 3)
    out.update(_save(spec, setup, artifacts))
    from peftbench.runs.post_training import after_training  # inference cost + forgetting

    out.update(after_training(spec, setup, fields))
    return out


def _save(spec: RunSpec, setup: _Setup, artifacts: Path) -> dict[str, Any]:
    """Save what the run trained when asked (`save_adapters`, `save_full_weights`); otherwise record the
    size it would take on disk, so that tables compare adapter sizes either way."""
    from peftbench.methods.artifacts import save_trained, trained_bytes

    keep = spec.save_full_weights if setup.method.name == "full" else spec.save_adapters
    if not keep:
        return {"adapter_bytes": trained_bytes(setup.model), "adapter_path": None, "adapter_saved": False}
    size = save_trained(setup.method, setup.model, artifacts, spec.hyperparameters, setup.ctx.model_type)
    return {"adapter_bytes": size, "adapter_path": str(artifacts), "adapter_saved": True}


def _predict(config: Any, spec: RunSpec, task: Any, prepared: Any) -> dict[str, Any] | None:
    """The estimator's prediction for this exact run, recorded beside the measurement."""
    try:
        from peftbench.estimate import predict_run_peak
    except ImportError:
        return None
    from peftbench.training import longest_padded_batch

    train, processes = spec.train, spec.processes
    # Every rank's micro-batches together are those of one process accumulating `world` times as many.
    micro_batches = train.max_steps * train.gradient_accumulation_steps * spec.world_size
    seq_len = longest_padded_batch(prepared.train_features, train.batch_size, spec.seed, micro_batches)
    try:
        plan = None
        if processes is not None:
            from peftbench.estimate.distributed import DistributedPlan

            plan = DistributedPlan(processes.world_size, processes.strategy, processes.offload)
        return predict_run_peak(config, spec.method, spec.hyperparameters, task.kind, train.batch_size,
                                seq_len, dtype=train.dtype, device=spec.device,
                                num_labels=prepared.num_labels or 2,
                                gradient_checkpointing=train.gradient_checkpointing, plan=plan)
    except Exception as exc:  # a prediction failure must not fail the measured run
        return {"error": f"{type(exc).__name__}: {exc}"}


def exit_with_parent() -> None:
    """End this worker when its driver dies (a SIGKILL gives the driver no chance to stop it): nobody would
    record its result, and the driver's next run sweeps its temporary folder."""
    import os
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def main(argv: list[str]) -> int:
    from peftbench.estimate.measure import pin_malloc_threshold

    exit_with_parent()

    # Before any allocation: with glibc's adaptive mmap threshold the same step's peak RSS varies by up to
    # 50% with what ran before; pinned, RSS follows live tensors (see pin_malloc_threshold).
    pin_malloc_threshold()
    spec_path, result_path, artifacts = argv
    spec = RunSpec.from_json(Path(spec_path).read_text())
    fields = execute(spec, Path(artifacts))
    tmp = Path(result_path + ".tmp")
    tmp.write_text(json.dumps(fields, default=str))
    tmp.replace(result_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
