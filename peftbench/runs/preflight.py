"""Checks of a plan that need the model: its config, and its module tree built on the meta device.

Made when the plan is built, before any run starts and without loading a weight: that the model exists
(a hub id offline must be in the local cache), that the device exists, that each task's sequences fit the
model's position table (soft prompts add their virtual tokens), and that methods given hyper-parameters on
the command line or in the suite can be applied to the model (peft's target matching on the meta model).
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from peftbench.errors import MethodNotApplicable, UserError, shown

DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?")


def check_device(value: Any) -> str:
    """`cpu`, `cuda` or `cuda:N`, and for CUDA a device that this machine has."""
    if not isinstance(value, str) or not DEVICE_PATTERN.fullmatch(value):
        raise UserError(f"device must be cpu, cuda or cuda:N, got {shown(value)}")
    if value == "cpu":
        return value
    import torch

    if not torch.cuda.is_available():
        raise UserError(f"device={value} but no CUDA device is available here (torch {torch.__version__}); "
                        "use device=cpu")
    index = int(value.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise UserError(f"device={value} but this machine has {torch.cuda.device_count()} CUDA device(s) "
                        f"(valid: cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return value


def model_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"model must be a packaged model (minilm, smollm2-135m), a folder with config.json or a "
                        f"hub id like org/name; got {shown(value) if value is not None else 'nothing'}")
    return value


def model_config(name: str, trust_remote_code: bool) -> Any:
    """The model's transformers config; a UserError where there is no such model (offline: not cached)."""
    from peftbench.models.catalogue import CATALOGUE, resolve_model
    from peftbench.models.loading import load_config

    _, source = resolve_model(name)
    if source == "hub":
        from huggingface_hub import constants, try_to_load_from_cache
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            validate_repo_id(name)
        except HFValidationError:
            raise UserError(f"unknown model {shown(name)}: not a packaged model ({', '.join(CATALOGUE)}), an "
                            "existing folder, or a valid hub id like org/name") from None
        if constants.HF_HUB_OFFLINE and not isinstance(try_to_load_from_cache(name, "config.json"), str):
            raise UserError(f"model {shown(name)} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set "
                            f"(valid offline: {', '.join(CATALOGUE)}, a folder with config.json, or a cached hub id)")
    return load_config(name, trust_remote_code)[0]


def check_task_fits(task: Any, model: str, config: Any, methods: list[tuple[Any, dict[str, Any]]],
                    overridden: set[str], trust_remote_code: bool = False) -> None:
    """Positions for every method, and `overridden` methods applied to the meta-device model."""
    from peftbench.estimate.build import model_class
    from peftbench.models.loading import allow_remote_model

    try:
        model_class(config, task.kind)
    except MethodNotApplicable:
        return  # the runs are recorded as skipped, with the reason
    allow_remote_model(config, task.kind, trust_remote_code)
    limit = position_limit(config, task.kind)
    for method, hyperparameters in methods:
        virtual = int(hyperparameters.get("num_virtual_tokens") or 0) if method.family == "soft_prompt" else 0
        if limit is not None and task.max_length + virtual > limit:
            added = f" plus {method.name}'s {virtual} virtual tokens" if virtual else ""
            raise UserError(f"task '{task.name}': max_length {task.max_length}{added} needs {task.max_length + virtual}"
                            f" positions, but {model} has {limit}; lower max_length"
                            + (f" or methods.{method.name}.num_virtual_tokens" if virtual else ""))
        if method.name in overridden:  # else the defaults: peft's own per-architecture targets
            _check_applies(task, model, config, method, hyperparameters)


def _check_applies(task: Any, model: str, config: Any, method: Any, hyperparameters: dict[str, Any]) -> None:
    """The method wrapped around the meta-device model as a run would wrap it: peft refuses target modules
    that match nothing, and each `modules_to_save` name must match a module (peft skips one that does not)."""
    import copy

    from peftbench.estimate.build import build_wrapped

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # a copy: peft appends its task head to `modules_to_save` in place, and these go into the run id
            wrapped = build_wrapped(config, method, copy.deepcopy(hyperparameters), task.kind, "fp32",
                                    device="meta")
    except MethodNotApplicable:
        return
    except (ValueError, TypeError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"methods.{method.name} cannot be applied to {model} (task '{task.name}'): {first}") \
            from None
    wanted = hyperparameters.get("modules_to_save") or []
    saved = _saved_module_names(wrapped)
    missing = [name for name in wanted if not any(s == name or s.endswith("." + name) for s in saved)]
    if missing:
        raise UserError(f"methods.{method.name} cannot be applied to {model} (task '{task.name}'): "
                        f"modules_to_save {shown(missing)} match no module of the model")


def _saved_module_names(model: Any) -> list[str]:
    from peft.utils import ModulesToSaveWrapper

    return [name for name, module in model.named_modules() if isinstance(module, ModulesToSaveWrapper)]


_LIMITS: dict[tuple[str, str], int | None] = {}


def position_limit(config: Any, task_kind: str) -> int | None:
    """Positions in the model's learned absolute position table (None: relative or rotary positions, no
    hard limit). Read off the meta-device model, so every architecture's own offsets count (RoBERTa's and
    BART's tables start at 2)."""
    import torch

    from peftbench.estimate.build import model_class

    key = (config.to_json_string(use_diff=False), task_kind)
    if key in _LIMITS:
        return _LIMITS[key]
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        model = model_class(config, task_kind).from_config(config)
    limit = None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Embedding) and name.rsplit(".", 1)[-1] in ("position_embeddings", "wpe",
                                                                                  "embed_positions"):
            padding = module.padding_idx + 1 if module.padding_idx is not None else 0
            usable = module.num_embeddings - int(getattr(module, "offset", 0)) - padding
            limit = usable if limit is None else min(limit, usable)
    _LIMITS[key] = limit
    return limit
