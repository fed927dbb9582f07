"""The estimator's answer on several GPUs: the one-GPU `estimate`, divided as `distributed` divides it.

Apart from `distributed` so that the one-GPU estimator (`api`, whose run peaks divide per rank) and this,
which calls it, import in one direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peftbench.errors import UserError
from peftbench.estimate.distributed import DistributedPlan, config_dict, distribute, unit_sizes

# Cheapest first: least communication and fewest moving parts (used by `smallest_fit`).
PLAN_ORDER = (("ddp", "none"), ("zero2", "none"), ("fsdp", "none"), ("zero3", "none"),
              ("zero2", "optimizer"), ("zero3", "optimizer"), ("zero3", "params"), ("fsdp", "params"))


def estimate_distributed(model: str, method: str, plan: DistributedPlan, **kwargs: Any) -> dict[str, Any]:
    """`estimate` (same keyword arguments) on `plan.gpus` GPUs under `plan.strategy`, as a JSON-able dict:
    the single-GPU answer's fields re-stated per GPU, plus gpus, strategy, offload, per_gpu_peak_bytes,
    communication_bytes_per_step, model_states_bytes_per_gpu and per-profile fits / step_seconds."""
    from peftbench.estimate.api import estimate, single_gpu_trace

    if "cpu" in [h.lower() for h in kwargs.get("hardware") or []]:
        raise UserError("--gpus/--strategy estimate GPUs: leave 'cpu' out of --hardware")
    from peftbench.hardware import resolve

    single = estimate(model, method, **kwargs).to_dict()
    defaults = {"overrides": None, "task_kind": "generation", "batch_size": 8, "seq_len": 512, "dtype": "bf16",
                "mixed_precision": None, "optimizer": "adamw", "gradient_checkpointing": False, "hardware": None,
                "num_labels": 2}
    trace = single_gpu_trace(model, method, **{**defaults, **kwargs})
    units = unit_sizes(config_dict(model), single["total_params"], single["trainable_params"])
    return distribute(single, trace, units, plan, resolve(kwargs.get("hardware")))


@dataclass
class Fit:
    """The cheapest way `method` fits `card` (fewest GPUs, then PLAN_ORDER), for the recommender."""

    gpus: int
    strategy: str
    offload: str
    per_gpu_peak_bytes: int
    step_seconds: float


def smallest_fit(model: str, method: str, card: str, max_gpus: int = 64, **kwargs: Any) -> Fit | None:
    """Fewest GPUs (1, 2, 4, … up to `max_gpus`) of profile `card` on which `method` fits, with the cheapest
    strategy (PLAN_ORDER) at that count; None when nothing up to `max_gpus` fits. One GPU without a
    strategy is the plain single-GPU answer. Same keyword arguments as `estimate` (hardware is `card`)."""
    from peftbench.estimate.api import estimate

    kwargs = {**kwargs, "hardware": [card]}
    single = estimate(model, method, **kwargs).to_dict()
    one = next(iter(single["profiles"].values()))
    if one["fits"]:
        return Fit(1, "none", "none", single["peak_bytes"], one["step_seconds"])
    gpus = 2
    while gpus <= max_gpus:
        for strategy, offload in PLAN_ORDER:
            answer = estimate_distributed(model, method, DistributedPlan(gpus, strategy, offload), **kwargs)
            prof = next(iter(answer["profiles"].values()))
            if prof["fits"]:
                return Fit(gpus, strategy, offload, answer["per_gpu_peak_bytes"], prof["step_seconds"])
        gpus *= 2
    return None
