"""`key=value` command-line overrides, Hydra style: `methods=[lora,ia3]`, `train.max_steps=20`,
`methods.lora.r=16`. Values are parsed as YAML flow scalars/lists (what OmegaConf's dotlist does too), by
`peftbench.safe_yaml`: `1e-4` is a number, and aliases, repeated keys and deep nesting are refused."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from peftbench import safe_yaml
from peftbench.errors import UserError, shown

TOP_LEVEL = ("suite", "model", "methods", "seeds", "tasks", "scale", "timeout", "device", "trust_remote_code", "jobs",
             "save_adapters", "save_full_weights", "measure_after_training", "executor", "ray_address", "ray_retries",
             "artifacts_dir", "tune", "gpus_per_run", "strategy", "offload")


@dataclass
class Overrides:
    values: dict[str, Any] = field(default_factory=dict)  # top-level keys
    train: dict[str, Any] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # caps on every task's train/eval subset
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    tune: dict[str, Any] = field(default_factory=dict)  # tune.grid=[...] etc. (peftbench.runs.tuning)


def parse_overrides(tokens: list[str]) -> Overrides:
    parsed = Overrides()
    for token in tokens:
        key, sep, raw = token.partition("=")
        if not sep or not key:
            raise UserError(f"override {shown(token)} must look like key=value (e.g. train.max_steps=20)")
        try:
            value = safe_yaml.load(raw, safe_yaml.MAX_VALUE_BYTES) if raw else None
        except safe_yaml.Refused as exc:
            raise UserError(f"override {shown(token)}: {exc.reason}") from None
        except yaml.YAMLError:
            raise UserError(f"override {shown(token)}: cannot parse value {shown(raw)} (YAML: a number, true/false, "
                            "a word or a [list])") from None
        parts = key.split(".")
        if parts[0] == "train" and len(parts) == 2:
            parsed.train[parts[1]] = value
        elif parts[0] == "sizes" and len(parts) == 2 and parts[1] in ("train", "eval"):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{key} must be a positive integer, got {shown(value)}")
            parsed.sizes[parts[1]] = value
        elif parts[0] == "methods" and len(parts) == 3:
            parsed.method_params.setdefault(parts[1], {})[parts[2]] = value
        elif parts[0] == "tune" and len(parts) == 2:
            parsed.tune[parts[1]] = value
        elif len(parts) == 1 and key in TOP_LEVEL:
            parsed.values[key] = value
        else:
            raise UserError(f"unknown override key {shown(key)} (valid: {', '.join(TOP_LEVEL)}, train.KEY, "
                            "sizes.train, sizes.eval, methods.NAME.KEY, tune.KEY)")
    return parsed


def as_list(value: Any, key: str, item_type: type) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(i, item_type) and not isinstance(i, bool) for i in items):
        raise UserError(f"{key} must be a {item_type.__name__} or a list of them, e.g. {key}=[a,b]; got {shown(value)}")
    return items
