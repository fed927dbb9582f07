"""Public entry points: `estimate` (CLI, recommender) and `predict_run_peak` (harness worker)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from peftbench.errors import UserError, shown
from peftbench.validation import check_task_kind

DTYPE_CHOICES = ("bf16", "fp16", "fp32")
OPTIMIZERS = ("adamw", "adamw8bit", "sgd")
# Where activations dominate (long sequences, full fine-tuning) the step peaks as backward starts: every saved
# activation is alive and the loss's fp32 gradient over the logits is allocated, while no weight gradient exists yet.
NO_GRADIENT_PEAK_NOTE = ("gradients 0 at the peak: the step peaks as backward starts, with every saved activation "
                         "alive and the logits' fp32 gradient allocated, before any weight gradient exists (the "
                         "previous step's were freed by zero_grad(set_to_none=True)); later in backward gradients "
                         "grow while activations are freed, to a lower total")
# QLoRA as run (peft's prepare_model_for_kbit_training, as the QLoRA reference code does) upcasts the embeddings and
# norms to fp32, so the residual stream and the hidden states saved for backward are fp32 while the 4-bit matmuls
# compute in bf16: more activation memory than LoRA on a bf16 base, though the weights take a quarter.
QLORA_ACTIVATIONS_NOTE = ("QLoRA's activations exceed LoRA's: prepare_model_for_kbit_training keeps embeddings and "
                          "norms in fp32, so the residual stream and the hidden states saved for backward are fp32 "
                          "(the 4-bit matmuls compute in bf16); gradient checkpointing removes most of them")
QLORA_NOTE = ("QLoRA's 4-bit base is emulated (bitsandbytes needs CUDA): packed NF4 weights with double-quantised "
              "scales, dequantised temporaries in forward and backward, fp32 upcast of non-quantised parameters")


@dataclass
class Estimate:
    model: str
    method: str
    trainable_params: int
    total_params: int
    peak_bytes: int  # CUDA max_memory_reserved-like; add a profile's cuda_context_bytes for nvidia-smi
    breakdown: dict[str, int]
    flops_per_step: float
    profiles: dict[str, dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)
    peak_phase: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MAX_BATCH, MAX_SEQ_LEN, MAX_LABELS = 1 << 20, 1 << 24, 1 << 20  # beyond any training step a card could hold


def _validate(task_kind: str, batch_size: int, seq_len: int, dtype: str,
              mixed_precision: str | None, optimizer: str, num_labels: int = 2) -> None:
    if dtype not in DTYPE_CHOICES:
        raise UserError(f"unknown dtype '{dtype}' (valid: {', '.join(DTYPE_CHOICES)})")
    if mixed_precision not in (None, "bf16", "fp16"):
        raise UserError(f"unknown mixed precision '{mixed_precision}' (valid: bf16, fp16)")
    if optimizer not in OPTIMIZERS:
        raise UserError(f"unknown optimizer '{optimizer}' (valid: {', '.join(OPTIMIZERS)})")
    for flag, value, high in (("--batch-size", batch_size, MAX_BATCH), ("--seq-len", seq_len, MAX_SEQ_LEN),
                              ("--num-labels", num_labels, MAX_LABELS)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
            raise UserError(f"{flag} must be an integer from 1 to {high}, got {shown(value)}")
    check_task_kind(task_kind)


def _validate_model(model: str) -> None:
    """A preset (by name or hub id), a packaged model, an existing path, or a hub id shaped `org/name`."""
    from peftbench.models.configs import canonical_model

    canonical_model(model)


def _validate_overrides(method: str, overrides: dict | None) -> None:
    """The method's name, against a torch-free list (a typo is refused in well under a second); then its
    hyper-parameter types and ranges (`methods.lora.r=-1` or `=abc`), before any cached answer is looked up.
    Without overrides the method's defaults hold, and the registry (which imports torch) is not needed."""
    from peftbench.validation import check_method

    check_method(method)
    if overrides:
        from peftbench.methods import get_method

        m = get_method(method)
        m.validate_hyperparameters(m.hyperparameters(overrides))


def estimate(model: str, method: str, *, overrides: dict | None = None, task_kind: str = "generation",
             batch_size: int = 8, seq_len: int = 512, dtype: str = "bf16", mixed_precision: str | None = None,
             optimizer: str = "adamw", gradient_checkpointing: bool = False, hardware: list[str] | None = None,
             num_labels: int = 2) -> Estimate:
    """Predict memory and step time of one training step, from the model's config alone.

    Raises `UserError` for bad input and `MethodNotApplicable` when the method cannot wrap this model.
    """
    _validate(task_kind, batch_size, seq_len, dtype, mixed_precision, optimizer, num_labels)
    _validate_model(model)
    _validate_overrides(method, overrides)
    return estimate_setting(model, method, overrides=overrides, task_kind=task_kind, batch_size=batch_size,
                            seq_len=seq_len, dtype=dtype, mixed_precision=mixed_precision, optimizer=optimizer,
                            gradient_checkpointing=gradient_checkpointing, hardware=hardware, num_labels=num_labels)


def estimate_setting(model: str, method: str, *, overrides: dict | None = None, task_kind: str = "generation",
                     batch_size: int = 8, seq_len: int = 512, dtype: str = "bf16", mixed_precision: str | None = None,
                     optimizer: str = "adamw", gradient_checkpointing: bool = False,
                     hardware: list[str] | None = None, num_labels: int = 2) -> Estimate:
    """`estimate` for a setting the caller derived from the registry's own declarations (the recommender's
    suggestions), so not checked again: checking hyper-parameters imports the registry, and with it torch
    (seconds), on a path that otherwise answers from shipped fits without torch."""
    from peftbench.estimate.front_cache import front_load, front_store
    from peftbench.models.configs import load_any_config

    kwargs: dict[str, Any] = dict(overrides=overrides, task_kind=task_kind, batch_size=batch_size, seq_len=seq_len,
                                  dtype=dtype, mixed_precision=mixed_precision, optimizer=optimizer,
                                  gradient_checkpointing=gradient_checkpointing, hardware=hardware,
                                  num_labels=num_labels)
    cached = front_load(model, method, kwargs)
    if cached is not None:  # keyed by the model the config builds: the label is the caller's
        return Estimate(**{**cached, "model": model})
    fitted = _from_shape_fit(model, method, kwargs)
    if fitted is not None:
        return fitted
    result = estimate_config(load_any_config(model), model, method, **kwargs)
    front_store(model, method, kwargs, result.to_dict())
    return result


def estimate_config(config, label: str, method: str, *, overrides: dict | None = None, task_kind: str = "generation",
                    batch_size: int = 8, seq_len: int = 512, dtype: str = "bf16", mixed_precision: str | None = None,
                    optimizer: str = "adamw", gradient_checkpointing: bool = False,
                    hardware: list[str] | None = None, num_labels: int = 2) -> Estimate:
    """`estimate` for a config object already in hand (benchmarks use it to adjust a preset)."""
    from peftbench.estimate.core import traced
    from peftbench.estimate.trace import Shape
    from peftbench.hardware import resolve
    from peftbench.methods import get_method

    m = get_method(method)
    hp = m.hyperparameters(overrides)
    profiles = resolve(hardware)
    traces: dict[str, dict] = {}
    for kind in sorted({p.kind for p in profiles.values()}, reverse=True):  # cuda first: the headline
        shape = Shape(batch_size, seq_len, dtype, mixed_precision, optimizer, gradient_checkpointing,
                      device=kind, num_labels=num_labels)
        traces[kind] = traced(config, m, hp, task_kind, shape)
    return _compose(label, method, hp, traces, profiles, [QLORA_NOTE] if m.quantize_4bit else [], "trace",
                    task_kind=task_kind, batch_size=batch_size, seq_len=seq_len, dtype=dtype,
                    mixed_precision=mixed_precision, optimizer=optimizer,
                    gradient_checkpointing=gradient_checkpointing)


def single_gpu_trace(model: str, method: str, **kwargs: Any) -> dict[str, Any]:
    """The CUDA trace `estimate` answers from (the shipped shape fit where it covers the call, else the
    cached trace), for models built on top of it (`distributed`). Same arguments as `estimate`."""
    from peftbench.estimate.front_cache import load_fit
    from peftbench.estimate.shape_fit import evaluate

    entry = load_fit(model, method, kwargs, "cuda")
    if entry is not None and "not_applicable" not in entry and entry["seq_range"] and \
            entry["seq_range"][0] <= kwargs["seq_len"] <= entry["seq_range"][1]:
        return evaluate(entry["fit"], kwargs["batch_size"], kwargs["seq_len"])
    # Tracing: torch and transformers are imported only here (seconds), not on the shipped fit's path above.
    from peftbench.estimate.core import traced
    from peftbench.estimate.trace import Shape
    from peftbench.methods import get_method
    from peftbench.models.configs import load_any_config

    m = get_method(method)
    shape = Shape(kwargs["batch_size"], kwargs["seq_len"], kwargs["dtype"], kwargs["mixed_precision"],
                  kwargs["optimizer"], kwargs["gradient_checkpointing"], device="cuda",
                  num_labels=kwargs["num_labels"])
    return traced(load_any_config(model), m, m.hyperparameters(kwargs["overrides"]), kwargs["task_kind"], shape)


def _from_shape_fit(model: str, method: str, kwargs: dict[str, Any]) -> Estimate | None:
    """The answer from a shipped shape fit (no torch import), or None where none covers this call."""
    from peftbench.errors import MethodNotApplicable
    from peftbench.estimate.front_cache import load_fit
    from peftbench.estimate.shape_fit import evaluate
    from peftbench.hardware import resolve

    if "cpu" in [h.lower() for h in kwargs.get("hardware") or []]:
        return None
    entry = load_fit(model, method, kwargs, "cuda")
    if entry is None:
        return None
    if "not_applicable" in entry:
        raise MethodNotApplicable(entry["not_applicable"])
    shortest, longest = entry["seq_range"] or (1, 0)
    if not shortest <= kwargs["seq_len"] <= longest:
        return None
    trace = evaluate(entry["fit"], kwargs["batch_size"], kwargs["seq_len"])
    source = f"shape fit (checked against traces at {len(entry['checked'])} shapes, max error " \
             f"{entry['max_error']:.3%})"
    if entry.get("model", model) != model:
        source += f"; {model} builds the same model as the preset {entry['model']} (models.config_identity)"
    settings = {k: kwargs[k] for k in ("task_kind", "batch_size", "seq_len", "dtype", "mixed_precision",
                                       "optimizer", "gradient_checkpointing")}
    return _compose(model, method, entry["hyperparameters"], {"cuda": trace}, resolve(kwargs["hardware"]),
                    entry["extra_notes"], source, **settings)


def _compose(label: str, method: str, hp: dict[str, Any], traces: dict[str, dict], profiles: dict[str, Any],
             extra_notes: list[str], source: str, *, task_kind: str, batch_size: int, seq_len: int, dtype: str,
             mixed_precision: str | None, optimizer: str, gradient_checkpointing: bool) -> Estimate:
    from peftbench.estimate.core import device_memory

    main_kind = "cuda" if "cuda" in traces else "cpu"
    trace = traces[main_kind]
    memory = device_memory(trace, main_kind)
    notes = list(trace.get("notes", [])) + list(extra_notes)
    if memory["breakdown"].get("gradients") == 0 and trace["trainable_params"]:
        notes.append(NO_GRADIENT_PEAK_NOTE)
    if method == "qlora" and not gradient_checkpointing:
        notes.append(QLORA_ACTIVATIONS_NOTE)
    return Estimate(
        model=label, method=method, trainable_params=trace["trainable_params"],
        total_params=trace["total_params"], peak_bytes=memory["peak_bytes"], breakdown=memory["breakdown"],
        flops_per_step=float(sum(trace["flops"].values())),
        profiles={name: _profile_answer(traces[p.kind], p, batch_size, seq_len,
                                        mixed_precision or dtype) for name, p in profiles.items()},
        settings={"task_kind": task_kind, "batch_size": batch_size, "seq_len": seq_len, "dtype": dtype,
                  "mixed_precision": mixed_precision, "optimizer": optimizer,
                  "gradient_checkpointing": gradient_checkpointing, "hyperparameters": hp,
                  "layers": trace["depth"]["layers"], "traced_layers": trace["depth"]["traced"],
                  "answered_from": source},
        peak_phase=memory["peak_phase"], notes=notes,
    )


def _profile_answer(trace: dict, profile, batch_size: int, seq_len: int, compute_dtype: str) -> dict[str, Any]:
    from peftbench.estimate.core import device_memory, max_scale, step_seconds

    memory = device_memory(trace, profile.kind)
    budget = profile.memory_bytes - profile.cuda_context_bytes
    scale = max_scale(trace, profile.kind, budget)
    answer = {
        "fits": memory["peak_bytes"] <= budget,
        "step_seconds": round(step_seconds(trace, profile), 6),
        "max_batch_size": int(batch_size * scale) if scale != float("inf") else None,
        "max_seq_len": int(seq_len * scale) if scale != float("inf") else None,
        "device_bytes": memory["peak_bytes"] + profile.cuda_context_bytes,
        "memory_bytes": profile.memory_bytes,
        "precision": profile.precision(compute_dtype),
    }
    if answer["precision"] != compute_dtype:
        answer["note"] = f"{profile.title} has no bf16: fp16 mixed precision (with loss scaling) is used"
    return answer


def predict_run_peak(config, method, hyperparameters: dict[str, Any], task_kind: str, batch_size: int,
                     seq_len: int, dtype: str = "fp32", device: str = "cpu", num_labels: int = 2,
                     gradient_checkpointing: bool = False, plan: Any = None) -> dict[str, Any]:
    """Predicted peak of one harness training step on `device`, for recording beside the measurement.

    CPU: increase of process RSS over the RSS before the model was loaded (the worker should call
    `peftbench.estimate.measure.pin_malloc_threshold()` at start, or glibc's free-list growth adds up to
    +50%). CUDA: max_memory_reserved-like. Cached by shape on disk; < 5 s for the packaged models.
    With `plan` (`estimate.distributed.DistributedPlan`, a run over several processes): one rank's peak, as
    `estimate --gpus N --strategy S` divides it, `batch_size` being the per-rank micro-batch.
    """
    from peftbench.estimate.core import device_memory, traced
    from peftbench.estimate.trace import Shape
    from peftbench.methods import get_method

    m = get_method(method) if isinstance(method, str) else method
    hp = dict(hyperparameters)
    kind = "cuda" if device.startswith("cuda") else "cpu"
    shape = Shape(batch_size, seq_len, dtype, None, "adamw", gradient_checkpointing, device=kind,
                  num_labels=num_labels)
    trace = traced(config, m, hp, task_kind, shape)
    memory = device_memory(trace, kind)
    if plan is not None:
        memory = _rank_memory(config, trace, memory, plan, kind, batch_size, seq_len, dtype)
    return {**memory, "flops_per_step": float(sum(trace["flops"].values())),
            "step_seconds": _step_on(trace, kind), "trainable_params": trace["trainable_params"],
            "total_params": trace["total_params"], "device": kind}


def _rank_memory(config, trace: dict, single: dict[str, Any], plan: Any, kind: str, batch_size: int, seq_len: int,
                 dtype: str) -> dict[str, Any]:
    """One rank's peak, phase and breakdown under `plan`, with the one-process peak beside them."""
    from peftbench.estimate.distributed import distribute, unit_sizes

    settings = {"dtype": dtype, "mixed_precision": None, "optimizer": "adamw", "batch_size": batch_size,
                "seq_len": seq_len}
    units = unit_sizes(config.to_dict(), trace["total_params"], trace["trainable_params"])
    answer = distribute({"peak_bytes": single["peak_bytes"], "profiles": {}, "notes": [], "settings": settings},
                        trace, units, plan, {}, kind=kind)
    return {"peak_bytes": answer["per_gpu_peak_bytes"], "peak_phase": answer["peak_phase"],
            "breakdown": answer["breakdown"], "single_process_peak_bytes": single["peak_bytes"],
            "world_size": plan.gpus, "strategy": plan.strategy, "offload": plan.offload,
            "communication_bytes_per_step": answer["communication_bytes_per_step"]}


def _step_on(trace: dict, kind: str) -> float | None:
    from peftbench.estimate.core import step_seconds
    from peftbench.hardware import gpu_profiles

    if kind == "cpu":
        from peftbench.hardware.cpu import cpu_profile

        return round(step_seconds(trace, cpu_profile()), 4)
    import torch

    name = torch.cuda.get_device_name().lower() if torch.cuda.is_available() else ""
    for profile in gpu_profiles().values():
        if profile.name.split("-")[0] in name.replace(" ", ""):
            return round(step_seconds(trace, profile), 4)
    return None
