"""Turn a suite and command-line overrides into the list of RunSpecs, validating everything first.

Every check that can fail on bad input happens here, before anything is written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from peftbench.errors import UserError
from peftbench.overrides import Overrides, as_list
from peftbench.runs.ray_executor import RayOptions, ray_options
from peftbench.runs.spec import RunSpec
from peftbench.suites import Suite, TrainConfig, load_suite


@dataclass
class Plan:
    suite: Suite
    specs: list[RunSpec]
    timeout: float | None
    jobs: int = 1
    ray: RayOptions | None = None  # executor=ray and its settings; None: the local executor


def build_plan(overrides: Overrides) -> Plan:
    from peftbench.data import load_task_data
    from peftbench.methods import get_method
    from peftbench.models.catalogue import resolve_model

    values = overrides.values
    if "suite" not in values:
        raise UserError("no suite given: peftbench run suite=NAME [key=value ...]")
    suite = load_suite(str(values["suite"]))
    methods = as_list(values.get("methods", list(suite.methods)), "methods", str)
    method_objs = [get_method(name) for name in methods]
    unknown = set(overrides.method_params) - set(methods)
    if unknown:
        raise UserError(f"overrides for methods not in this run: {sorted(unknown)} (running: {methods})")
    seeds = as_list(values.get("seeds", list(suite.seeds)), "seeds", int)
    tasks = [suite.task(name) for name in as_list(values["tasks"], "tasks", str)] if "tasks" in values \
        else list(suite.tasks)
    scale = values.get("scale", "default")
    if scale not in ("default", "full"):
        raise UserError(f"scale must be default or full, got {scale!r}")
    device = str(values.get("device", "cpu"))
    if not (device == "cpu" or device.startswith("cuda")):
        raise UserError(f"device must be cpu or cuda, got {device!r}")
    ray = ray_options(values, device)
    timeout = _timeout(values.get("timeout", 3600))
    trust_remote_code = _boolean(values, "trust_remote_code", False)
    save_adapters = _boolean(values, "save_adapters", True)
    save_full_weights = _boolean(values, "save_full_weights", False)
    jobs = _jobs(values.get("jobs", "auto"), device, TrainConfig.build(suite.train, {}, overrides.train).threads)

    specs = []
    if overrides.sizes:
        tasks = [dataclasses.replace(t, sizes={**t.sizes, **{k: min(v, t.sizes.get(k, v))
                                                                for k, v in overrides.sizes.items()}})
                 for t in tasks]
    for task in tasks:
        model = str(values.get("model", task.model))
        resolve_model(model)
        data = load_task_data(task, scale)
        train = TrainConfig.build(suite.train, task.train, overrides.train)
        for method in method_objs:
            hyperparameters = method.hyperparameters(overrides.method_params.get(method.name))
            if "total_step" in hyperparameters and hyperparameters["total_step"] is None:
                hyperparameters["total_step"] = train.max_steps
            lr = train.learning_rate or hyperparameters["learning_rate"] * train.lr_multiplier
            train_dict = dataclasses.asdict(train) | {"learning_rate": lr}
            hyperparameters["learning_rate"] = lr
            for seed in seeds:
                specs.append(RunSpec(suite=suite.name, task=_task_dict(task), model=model, method=method.name,
                                     hyperparameters=hyperparameters, train=train_dict, seed=seed, scale=scale,
                                     data_fingerprint=data.fingerprint, device=device,
                                     trust_remote_code=trust_remote_code, save_adapters=save_adapters,
                                     save_full_weights=save_full_weights))
    return Plan(suite, specs, timeout, jobs, ray)


def _task_dict(task: Any) -> dict[str, Any]:
    out = task.to_dict()
    out["labels"] = list(out["labels"]) if out["labels"] else None
    out["metrics"] = list(out["metrics"])
    return out


def _boolean(values: dict[str, Any], key: str, default: bool) -> bool:
    """A real YAML boolean (true/false, yes/no) or the default. Anything else is refused, not coerced: for
    trust_remote_code, `bool("false")` would be True and run the model folder's code."""
    value = values.get(key, default)
    if not isinstance(value, bool):
        raise UserError(f"{key} must be true or false, got {value!r}")
    return value


def _timeout(value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise UserError(f"timeout must be a positive number of seconds, got {value!r}")
    return float(value)


def _jobs(value: Any, device: str, threads: int) -> int:
    """Concurrent runs. `auto`: one per `threads` usable CPU cores; on CUDA one, so that each run has the
    GPU (and the device-wide pynvml peak) to itself."""
    import os

    if value == "auto":
        if device != "cpu":
            return 1
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, cores // max(1, threads))
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"jobs must be a positive integer or auto, got {value!r}")
    return value
