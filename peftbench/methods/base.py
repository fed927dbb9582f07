"""The method abstraction: one `Method` per fine-tuning technique, all held in one registry.

A method knows its family, which architectures it supports, its default hyper-parameters and how to
wrap a model. The harness (real weights) and the estimator (meta / fake tensors) call the same
`Method.apply`, so trainable-parameter counts agree by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from peftbench.errors import MethodNotApplicable, UserError, did_you_mean
from peftbench.method_declarations import DECLARATIONS
from peftbench.vocabulary import ARCHITECTURES, FAMILIES  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from peftbench.record import RunRecord

# Keys that configure training rather than the peft config; every method accepts them.
TRAINING_KEYS = ("learning_rate",)


@dataclass(frozen=True)
class MethodContext:
    """What a method needs to know about the model and task it wraps."""

    architecture: str  # encoder | decoder | encoder-decoder
    model_type: str  # transformers `config.model_type`, e.g. "bert", "llama"
    task_kind: str  # classification | generation | multiple_choice
    device: str = "cpu"
    decodes: bool = False  # the run evaluates by generating (the harness); the estimator only trains

    @property
    def peft_task_type(self) -> str:
        if self.task_kind == "classification":
            return "SEQ_CLS"
        if self.architecture == "encoder-decoder":
            return "SEQ_2_SEQ_LM"
        return "CAUSAL_LM"


Applier = Callable[[nn.Module, dict[str, Any], MethodContext], nn.Module]
Checker = Callable[[MethodContext], "str | None"]


@dataclass(frozen=True)
class Method:
    """One fine-tuning method. `apply` returns the wrapped model with only the method's parameters trainable."""

    name: str
    family: str
    description: str
    defaults: Mapping[str, Any]
    applier: Applier
    architectures: tuple[str, ...] = ARCHITECTURES
    uses_peft: bool = True
    check: Checker | None = None
    citation: str = ""
    extra_keys: tuple[str, ...] = field(default=())
    peft_config: str | None = None  # name of the peft config class whose fields are valid overrides
    quantize_4bit: bool = False  # the base model is loaded in 4-bit (QLoRA)
    step_hook: Callable[[nn.Module, int], None] | None = None  # called after each optimizer step (AdaLoRA)
    version: int = 1  # revisions: see `peftbench.method_declarations.MethodDeclaration`
    applicability: int = 1

    def hyperparameters(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults merged with user overrides; unknown keys are rejected with the valid ones named."""
        merged = dict(self.defaults)
        for key, value in (overrides or {}).items():
            if key not in merged and key not in self.extra_keys and not self._accepts_peft_key(key):
                valid = ", ".join(sorted(set(merged) | set(self.extra_keys)))
                raise UserError(f"method '{self.name}' has no hyper-parameter '{key}' (valid: {valid})")
            merged[key] = value
        return merged

    def validate_hyperparameters(self, hyperparameters: Mapping[str, Any]) -> None:
        """Types and ranges of merged hyper-parameters (peft's config field types, positive ranks, dropouts
        in [0, 1), real booleans): a UserError naming the key, before any run starts."""
        from peftbench.validation import validate_hyperparameters

        validate_hyperparameters(self, hyperparameters)

    def variant_label(self, hyperparameters: Mapping[str, Any]) -> str:
        """The method's name, plus the hyper-parameters that differ from its defaults ("lora r=16"), so that
        configurations of one method are told apart in tables. The learning rate and the schedule-derived
        keys are left out: the suite scales them for every method alike."""
        differing = [f"{k}={_short(v)}" for k, v in sorted(hyperparameters.items())
                     if k not in _SCHEDULE_KEYS and k in self.defaults and v != self.defaults[k]]
        differing += [f"{k}={_short(v)}" for k, v in sorted(hyperparameters.items())
                      if k not in self.defaults and k not in _SCHEDULE_KEYS]
        return " ".join([self.name, *differing])

    def _accepts_peft_key(self, key: str) -> bool:
        if self.peft_config is None:
            return False
        import peft

        return key in getattr(peft, self.peft_config).__dataclass_fields__

    def not_applicable_reason(self, ctx: MethodContext) -> str | None:
        reason = self.check(ctx) if self.check else None  # the specific why, when the method gives one
        if reason is None and ctx.architecture not in self.architectures:
            supported = ", ".join(self.architectures)
            reason = f"{self.name} supports {supported} models, not {ctx.architecture}"
        return reason

    def apply(self, model: nn.Module, hyperparameters: Mapping[str, Any], ctx: MethodContext) -> nn.Module:
        reason = self.not_applicable_reason(ctx)
        if reason:
            raise MethodNotApplicable(reason)
        peft_kwargs = {k: v for k, v in hyperparameters.items() if k not in TRAINING_KEYS}
        return self.applier(model, peft_kwargs, ctx)


_REGISTRY: dict[str, Method] = {}


_SCHEDULE_KEYS = {"learning_rate", "total_step"}


def _short(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def variant_label(method: str, hyperparameters: Mapping[str, Any] | None) -> str:
    """`Method.variant_label` for a recorded run; the bare name for methods this version does not know."""
    try:
        return get_method(method).variant_label(hyperparameters or {})
    except UserError:
        return method


def declared(name: str, applier: Applier, **torch_side: Any) -> Method:
    """The method `peftbench.method_declarations` declares as `name`, applied by `applier`; `torch_side`: the
    hooks that need torch or a device (`check`, `step_hook`)."""
    d = DECLARATIONS[name]
    return Method(d.name, d.family, d.description, d.defaults, applier, architectures=d.architectures,
                  uses_peft=d.uses_peft, extra_keys=d.extra_keys, peft_config=d.peft_config,
                  quantize_4bit=d.quantize_4bit, version=d.version, applicability=d.applicability, **torch_side)


def register(method: Method) -> Method:
    if method.family not in FAMILIES:
        raise ValueError(f"unknown family {method.family!r}")
    if method.name not in DECLARATIONS:
        raise ValueError(f"method {method.name!r} is not declared in peftbench.method_declarations")
    if method.name in _REGISTRY:
        raise ValueError(f"method {method.name!r} registered twice")
    _REGISTRY[method.name] = method
    return method


def registry() -> dict[str, Method]:
    return dict(_REGISTRY)


def get_method(name: str) -> Method:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown method '{name}'{did_you_mean(name, _REGISTRY)} "
                        f"(valid: {', '.join(sorted(_REGISTRY))})") from None


def recorded_skip_stands(record: RunRecord) -> bool:
    """Whether a run recorded `skipped` still stands: yes unless an older revision of the method's applicability
    (`Method.applicability`) recorded it and the method now applies in the recorded context (architecture,
    model type, task kind, device), in which case resuming runs it again."""
    try:
        method = get_method(record.method)
    except UserError:  # a method this version does not know: its skip stands
        return True
    if int(record.applicability or 1) >= method.applicability:
        return True
    if not record.architecture or not record.model_type:
        return False  # too little recorded to judge: run it again
    kind = record.task_kind or ""
    device = str(record.device.get("type") or "cpu")
    context = MethodContext(record.architecture, record.model_type, kind, device, decodes=kind == "generation")
    return method.not_applicable_reason(context) is not None


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters, counting tied weights once."""
    seen: set[int] = set()
    trainable = total = 0
    for param in model.parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        n = param.numel()
        if hasattr(param, "quant_state"):  # bitsandbytes 4-bit packs two values per byte
            n *= 2
        total += n
        trainable += n if param.requires_grad else 0
    return trainable, total


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
