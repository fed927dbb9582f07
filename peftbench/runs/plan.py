"""Turn a suite and command-line overrides into the list of RunSpecs, validating everything first.

Every check that can fail on bad input happens here, before anything is written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from peftbench.errors import UserError, shown
from peftbench.overrides import Overrides, as_list
from peftbench.runs.launch import multi_process_options
from peftbench.runs.post_training import measure_by_default
from peftbench.runs.ray_executor import RayOptions, ray_options
from peftbench.runs.spec import Processes, RunSpec
from peftbench.suites import Suite, TrainConfig, boolean, load_suite, number, seed


@dataclass
class Plan:
    suite: Suite
    specs: list[RunSpec]
    timeout: float | None
    jobs: int = 1
    ray: RayOptions | None = None  # executor=ray and its settings; None: the local executor


def build_plan(overrides: Overrides) -> Plan:
    from peftbench.methods import get_method
    from peftbench.runs import preflight

    values = overrides.values
    if "suite" not in values:
        raise UserError("no suite given: peftbench run suite=NAME [key=value ...]")
    if not isinstance(values["suite"], str) or not values["suite"]:
        raise UserError(f"suite must be a suite name or a path to a .yaml file, got {shown(values['suite'])}")
    suite = load_suite(values["suite"])
    methods = as_list(values.get("methods", list(suite.methods)), "methods", str)
    method_objs = [get_method(name) for name in methods]
    unknown = set(overrides.method_params) - set(methods)
    if unknown:
        raise UserError(f"overrides for methods not in this run: {sorted(unknown)} (running: {methods})")
    seeds = [seed(s) for s in as_list(values.get("seeds", list(suite.seeds)), "seeds", int)]
    tasks = [suite.task(name) for name in as_list(values["tasks"], "tasks", str)] if "tasks" in values \
        else list(suite.tasks)
    scale = values.get("scale", "default")
    if scale not in ("default", "full"):
        raise UserError(f"scale must be default or full, got {shown(scale)}")
    # Ray's own device rule first (it holds wherever the driver runs), then whether this machine has the device.
    ray = ray_options(values, str(values.get("device", "cpu")))
    device = preflight.check_device(values.get("device", "cpu"))
    processes = multi_process_options(values, device, ray is not None)  # {} for a one-process run
    timeout = _timeout(values.get("timeout", 3600))
    trust_remote_code = _boolean(values, "trust_remote_code", False)
    save_adapters = _boolean(values, "save_adapters", True)
    save_full_weights = _boolean(values, "save_full_weights", False)
    measure_after_training = _boolean(values, "measure_after_training", measure_by_default())
    threads = TrainConfig.build(suite.train, {}, overrides.train).threads
    jobs = _jobs(values.get("jobs", "auto"), device, threads * processes.get("world_size", 1))
    model_override = preflight.model_name(values["model"]) if "model" in values else None

    if overrides.sizes:
        tasks = [dataclasses.replace(t, sizes={**t.sizes, **{k: min(v, t.sizes.get(k, v))
                                                                for k, v in overrides.sizes.items()}})
                 for t in tasks]
    specs = []
    configs: dict[str, Any] = {}  # each model's config, read once per plan
    common = dict(suite=suite.name, scale=scale, device=device, trust_remote_code=trust_remote_code,
                  save_adapters=save_adapters, save_full_weights=save_full_weights,
                  measure_after_training=measure_after_training,
                  processes=Processes(**processes) if processes else None)
    for task in tasks:
        train = TrainConfig.build(suite.train, task.train, overrides.train)
        chosen = [(method, _hyperparameters(method, overrides.method_params.get(method.name), train))
                  for method in method_objs]
        model, data = _model_and_data(task, model_override or task.model, trust_remote_code, scale, chosen,
                                      set(overrides.method_params), configs)
        for method, hyperparameters in chosen:
            resolved = dataclasses.replace(train, learning_rate=hyperparameters["learning_rate"])
            specs += [RunSpec(task=task, model=model, method=method.name, hyperparameters=hyperparameters,
                              train=resolved, seed=s, data_fingerprint=data.fingerprint, **common) for s in seeds]
    return Plan(suite, specs, timeout, jobs, ray)


def _hyperparameters(method: Any, overrides: dict[str, Any] | None, train: TrainConfig) -> dict[str, Any]:
    """The method's defaults with the overrides, the schedule filled in, the learning rate resolved, checked."""
    hyperparameters = method.hyperparameters(overrides)
    if "total_step" in hyperparameters and hyperparameters["total_step"] is None:
        hyperparameters["total_step"] = train.max_steps
    method.validate_hyperparameters(hyperparameters)
    lr = train.learning_rate or hyperparameters["learning_rate"] * train.lr_multiplier
    number(lr, f"the learning rate of {method.name} (train.learning_rate, or its default x train.lr_multiplier)",
           low=0.0, low_open=True)
    hyperparameters["learning_rate"] = lr
    return hyperparameters


def _model_and_data(task: Any, model: str, trust_remote_code: bool, scale: str,
                    chosen: list[tuple[Any, dict[str, Any]]], overridden: set[str],
                    configs: dict[str, Any]) -> tuple[str, Any]:
    """The model checked (it exists; the task's sequences and the methods fit it) and the task's data loaded."""
    from peftbench.data import load_task_data
    from peftbench.runs import preflight

    if model not in configs:
        configs[model] = preflight.model_config(model, trust_remote_code)
    data = load_task_data(task, scale)
    preflight.check_task_fits(task, model, configs[model], chosen, overridden, trust_remote_code)
    return model, data


def _boolean(values: dict[str, Any], key: str, default: bool) -> bool:
    """The override's real boolean (`suites.boolean`), or the default."""
    return boolean(values.get(key, default), key)


MAX_TIMEOUT = 1e9  # ~32 years: beyond it, a number is a typo (and nan or inf are no timeout at all)


def _timeout(value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= MAX_TIMEOUT:
        raise UserError(f"timeout must be a number of seconds in (0, {MAX_TIMEOUT:g}] (or null: none), "
                        f"got {shown(value)}")
    return float(value)


def _jobs(value: Any, device: str, threads: int) -> int:
    """Concurrent runs. `auto`: one per `threads` usable CPU cores (a run over several processes uses
    `threads` in each); on CUDA one, so that each run has the GPU (and the device-wide pynvml peak) to itself."""
    import os

    if value == "auto":
        if device != "cpu":
            return 1
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, cores // max(1, threads))
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"jobs must be a positive integer or auto, got {shown(value)}")
    return value
