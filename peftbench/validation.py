"""Every check of what a user types, made before any run, estimate or answer starts: method names and
hyper-parameters (suite YAML's `methods:`, `methods.NAME.KEY=VALUE` overrides), task kinds, the estimate and
recommend commands' values, and the typed values of suite files and run overrides (booleans, counts, finite
numbers, seeds). A refusal is a UserError (exit code 2) that names the key, what is valid and the value given.

Torch-free at import: the CLI calls these before anything heavy loads, so a typo costs no seconds. (Suite files
are parsed by `peftbench.suites` and run overrides by `peftbench.overrides`; both check their values here.)
"""

from __future__ import annotations

import enum
import sys
import types
import typing
import warnings
from collections.abc import Mapping
from typing import Any, Protocol

from peftbench.errors import UserError, did_you_mean, shown
from peftbench.method_declarations import METHOD_NAMES
from peftbench.vocabulary import KIND_ALIASES, TASK_KIND_NAMES

INT_MAX = 2**31 - 1  # beyond any batch size, rank, token or step count a run could allocate


class DeclaredMethod(Protocol):
    """What the hyper-parameter checks read of a method (a `Method` or its declaration)."""

    @property
    def name(self) -> str: ...
    @property
    def peft_config(self) -> str | None: ...
    @property
    def defaults(self) -> Mapping[str, Any]: ...


# ---- names ----------------------------------------------------------------------------------------------------


def check_method(name: str) -> str:
    """`name` when it names a method, else a UserError with the closest names and every valid one."""
    if name not in METHOD_NAMES:
        raise UserError(f"unknown method {shown(name)}{did_you_mean(name, METHOD_NAMES)} "
                        f"(valid: {', '.join(METHOD_NAMES)})")
    return name


def check_task_kind(value: str) -> str:
    """`value` when it names a task kind, else a UserError naming the valid ones."""
    if value not in TASK_KIND_NAMES:
        raise UserError(f"unknown task kind '{value}'{did_you_mean(value, TASK_KIND_NAMES)} "
                        f"(valid: {', '.join(TASK_KIND_NAMES)})")
    return value


def check_recommend_task(task: str) -> None:
    """`recommend --task`: a kind, or something shaped SUITE/TASK (whose suite file says whether it exists); a typo
    of a kind is refused with the closest kinds, before any evidence is read."""
    if "/" not in task and task.lower() not in KIND_ALIASES:
        raise UserError(f"unknown task {shown(task)}{did_you_mean(task, KIND_ALIASES)} (give a kind: "
                        f"{', '.join(KIND_ALIASES)}; or SUITE/TASK)")


# ---- the estimate command's values ----------------------------------------------------------------------------


def parse_method_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """`methods.lora.r=16` → {"lora": {"r": 16}}; values read as `run` reads them (`peftbench.safe_yaml`: lists,
    numbers such as 5e-4, booleans; aliases, repeated keys, deep nesting and oversized values refused)."""
    import yaml

    from peftbench import safe_yaml

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        parts = key.split(".")
        if not sep or len(parts) != 3 or parts[0] != "methods" or not all(parts):
            raise UserError(f"override {shown(item)} must look like methods.NAME.KEY=VALUE")
        try:
            value = safe_yaml.load(raw, safe_yaml.MAX_VALUE_BYTES) if raw else None
        except safe_yaml.Refused as exc:
            raise UserError(f"override {shown(item)}: {exc.reason}") from None
        except yaml.YAMLError:
            raise UserError(f"cannot parse the value of {shown(item)}") from None
        out.setdefault(parts[1], {})[parts[2]] = value
    return out


def overridden_methods(method: str, overrides: Mapping[str, object]) -> list[str]:
    """The methods `--method` names (`all`: every one), once the overrides are known to name only those."""
    if method == "all":
        methods = list(METHOD_NAMES)
        unknown = set(overrides) - set(methods)
        if unknown:
            name = sorted(unknown)[0]
            raise UserError(f"override for unknown method {shown(name)}{did_you_mean(name, methods)} "
                            f"(valid: {', '.join(methods)})")
        return methods
    if set(overrides) - {method}:
        raise UserError(f"overrides name methods other than '{method}': {', '.join(sorted(overrides))}")
    return [method]


def hardware_names(gpu: list[str] | None, hardware: list[str] | None) -> list[str] | None:
    """The profile names or memory classes `--gpu` (else `--hardware`) gives, comma lists split; None: not given."""
    names = gpu if gpu is not None else hardware
    if names is None:
        return None
    parsed = [n.strip() for item in names for n in item.split(",") if n.strip()]
    if not parsed:
        raise UserError("--gpu / --hardware need a value: a memory class such as 16GB, or profile names "
                        "(peftbench hardware lists them)")
    return parsed


# ---- values of suite files and run overrides (`peftbench.suites`, `peftbench.runs.plan`) ------------------------


def boolean(value: Any, name: str) -> bool:
    """A real boolean (YAML true/false, yes/no). Anything else is refused, not coerced: `bool("false")` is
    True, and for trust_remote_code that would run a model folder's code."""
    if not isinstance(value, bool):
        raise UserError(f"{name} must be true or false, got {shown(value)}")
    return value


def positive_int(value: Any, name: str, high: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1 or (high is not None and value > high):
        bound = f" of at most {high}" if high is not None else ""
        raise UserError(f"{name} must be a positive integer{bound}, got {shown(value)}")
    return value


FLOAT_MAX = sys.float_info.max


def number(value: Any, name: str, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> float:
    """A finite int or float (not a bool) within [low, high] (or (low, high] when `low_open`)."""
    # An int past the float range is no finite number either: every rate and ratio becomes a float later.
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and -FLOAT_MAX <= value <= FLOAT_MAX
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        raise UserError(f"{name} must be a finite number{_range_text(low, high, low_open)}, got {shown(value)}")
    return typing.cast(float, value)  # the int or float given, unconverted


def _range_text(low: float | None, high: float | None, low_open: bool) -> str:
    if low is None:
        return f" <= {high:g}" if high is not None else ""
    if high is None:
        return f" > {low:g}" if low_open else f" >= {low:g}"
    return f" in {'(' if low_open else '['}{low:g}, {high:g}]"


SEED_MAX = 2**32 - 1  # numpy's generators take seeds in [0, 2**32 - 1]


def seed(value: Any, name: str = "seeds") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= SEED_MAX:
        raise UserError(f"{name}: each seed must be an integer from 0 to {SEED_MAX}, got {shown(value)}")
    return value


# ---- hyper-parameters -----------------------------------------------------------------------------------------
# Types come from the peft config dataclass the method is applied through (`LoraConfig.r: int`,
# `lora_dropout: float`, `target_modules: str | list[str] | None`), so a new peft field is checked without a table
# here; the ranges peft leaves to its layers (a rank of -1 fails deep inside a run) are added below. The config is
# then built once, so that peft's own cross-field checks (`__post_init__`) run here too.

# Integers that count something and must be at least 1 (at least 0 where the method's default is 0:
# OFT's `r=0` means "take the block size instead").
POSITIVE = {"r", "init_r", "target_r", "lora_alpha", "alpha", "num_virtual_tokens", "encoder_hidden_size",
            "encoder_num_layers", "boft_n_butterfly_factor", "total_step", "deltaT", "reduction_factor"}
MODULE_LISTS = {"target_modules", "feedforward_modules", "modules_to_save", "exclude_modules"}
# Methods peft does not implement: their keys' types, here.
OWN_TYPES: dict[str, Any] = {"reduction_factor": int, "target_modules": str | list[str] | None}


def validate_hyperparameters(method: DeclaredMethod, hyperparameters: Mapping[str, Any]) -> None:
    """UserError naming `methods.NAME.KEY`, the valid type or range, and the value, for the first bad one."""
    hints = _peft_hints(method.peft_config) if method.peft_config else OWN_TYPES
    defaults = {**(_peft_defaults(method.peft_config) if method.peft_config else {}), **method.defaults}
    for key, value in hyperparameters.items():
        where = f"methods.{method.name}.{key}"
        if key == "learning_rate":
            _check(isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value) and value > 0,
                   where, "a finite number > 0", value)
            continue
        hint = hints.get(key)
        if hint is None:
            continue  # a key this version cannot type; peft checks it when the config is built
        _check(_matches(value, hint), where, _describe(hint), value)
        _check_range(key, value, defaults.get(key), where)
    if method.peft_config:
        _build_config(method.name, method.peft_config, hyperparameters)


def _check(ok: bool, where: str, valid: str, value: Any) -> None:
    if not ok:
        raise UserError(f"{where} must be {valid}, got {shown(value)}")


def _check_range(key: str, value: Any, default: Any, where: str) -> None:
    if isinstance(value, float):
        _check(_finite(value), where, "a finite number", value)
    if "dropout" in key and isinstance(value, (int, float)):
        _check(0 <= value < 1, where, "a probability in [0, 1)", value)
    if isinstance(value, int) and not isinstance(value, bool):
        low = 1 if key in POSITIVE and default != 0 else 0
        if isinstance(default, int) and default < 0:  # LoKr's decompose_factor=-1 means "automatic"
            low = default
        _check(low <= value <= INT_MAX, where, f"an integer from {low} to {INT_MAX}", value)
    if key in MODULE_LISTS and isinstance(value, list):
        _check(bool(value) and all(isinstance(v, str) and v for v in value), where,
               "a non-empty list of module names (or one name / regex)", value)


def _finite(value: int | float) -> bool:
    """Not nan or inf, and, for an int, within the float range (a rate becomes a float when it is used)."""
    return -sys.float_info.max <= value <= sys.float_info.max


def _peft_hints(config_name: str) -> dict[str, Any]:
    import peft

    return typing.get_type_hints(getattr(peft, config_name))


def _peft_defaults(config_name: str) -> dict[str, Any]:
    import dataclasses

    import peft

    return {f.name: f.default for f in dataclasses.fields(getattr(peft, config_name))}


def _build_config(name: str, config_name: str, hyperparameters: Mapping[str, Any]) -> None:
    """peft's own checks across fields (OFT: r or block size; IA3: feed-forward modules among the targets)."""
    import peft

    kwargs = {k: v for k, v in hyperparameters.items() if k != "learning_rate"}
    if "total_step" in kwargs and kwargs["total_step"] is None:
        kwargs["total_step"] = 1000  # the plan sets it from train.max_steps; here any positive value will do
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            getattr(peft, config_name)(**kwargs)
    except (ValueError, TypeError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"methods.{name}: peft refuses these hyper-parameters: {first}") from None


def _matches(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return True
    if hint is type(None) or hint is None:
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is typing.Literal:
        # peft writes some families of values as a pattern, e.g. "pissa_niter_[number of iters]"
        return value in args or isinstance(value, str) and any(
            isinstance(a, str) and "[" in a and value.startswith(a.split("[")[0]) for a in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple) or hint in (list, tuple):
        return isinstance(value, (list, tuple)) and (not args or all(_matches(v, args[0]) for v in value))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return any(value == member or value == member.value for member in hint)
    return True  # a type no command line can spell (a config object): peft checks it when the config is built


def _union_order(hint: Any) -> tuple[int, str]:
    """Plain types first, then containers, then null; by name within each."""
    rank = 2 if hint is type(None) else 1 if typing.get_origin(hint) is not None else 0
    return rank, str(hint)


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        # In a fixed order: typing caches unions that compare equal as sets, so the order of `args` depends on
        # which spelling of the union the process met first, and the message would change with import order.
        return " or ".join(_describe(a) for a in sorted(args, key=_union_order))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (list, tuple):
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s" if args else "a list"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "one of " + ", ".join(str(m.value) for m in hint)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping",
             type(None): "null", list: "a list"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))
