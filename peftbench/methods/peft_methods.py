"""Every method that peft implements, registered from its declaration (`peftbench.method_declarations`, where
the defaults and their reasons are) with the applier that wraps a model through peft."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from peftbench.method_declarations import DECLARATIONS
from peftbench.methods import decoding
from peftbench.methods.base import MethodContext, declared, register


def _peft_applier(config_name: str, **fixed: Any):
    """Build `get_peft_model(model, <config_name>(task_type=..., **fixed, **user))`."""

    def apply(model: nn.Module, kwargs: dict[str, Any], ctx: MethodContext) -> nn.Module:
        import peft

        config_cls = getattr(peft, config_name)
        merged = {**fixed, **kwargs}
        if "target_modules" in config_cls.__dataclass_fields__ and merged.get("target_modules") is None:
            merged["target_modules"] = default_target_modules(config_name, model, ctx)
        if config_name == "IA3Config" and merged.get("feedforward_modules") is None:
            merged["feedforward_modules"] = _FALLBACK_IA3.get(ctx.model_type, (None, None))[1]
        config = config_cls(task_type=ctx.peft_task_type, **merged)
        wrapped = peft.get_peft_model(model, config)
        if config_name in ("PromptTuningConfig", "PromptEncoderConfig") and hasattr(
                wrapped, "base_model_prepare_inputs_for_generation"):
            decoding.bridge_renamed_generation_cache(wrapped)
        if config_name == "PrefixTuningConfig" and ctx.peft_task_type == "CAUSAL_LM":
            decoding.bridge_prefix_generation(wrapped)
        return wrapped

    return apply


# Architectures that peft 0.21's per-method tables omit, targeted the way peft targets their relatives:
# Phi-3 fuses q/k/v into `qkv_proj` (LoRA's q/v default becomes the fused projection) and IA3 rescales it
# and the feed-forward output.
_FALLBACK_TARGETS = {"phi3": ["qkv_proj"]}
_FALLBACK_IA3 = {"phi3": (["qkv_proj", "down_proj"], ["down_proj"])}
_TABLES = {"LoraConfig": "LORA", "AdaLoraConfig": "ADALORA", "LoHaConfig": "LOHA", "LoKrConfig": "LOKR",
           "VeraConfig": "VERA", "OFTConfig": "OFT", "BOFTConfig": "BOFT", "IA3Config": "IA3"}


def default_target_modules(config_name: str, model: nn.Module, ctx: MethodContext) -> Sequence[str] | str | None:
    """peft's own per-architecture defaults (None: peft picks them), with fallbacks where its tables omit
    the architecture: LoRA's table (AdaLoRA's lacks Mistral), then `_FALLBACK_TARGETS`."""
    from peft.utils import constants

    if config_name == "LNTuningConfig":
        return constants.TRANSFORMERS_MODELS_TO_LNTUNING_TARGET_MODULES_MAPPING.get(ctx.model_type) \
            or norm_module_suffixes(model)
    table = getattr(constants, f"TRANSFORMERS_MODELS_TO_{_TABLES.get(config_name, 'LORA')}_TARGET_MODULES_MAPPING", {})
    if ctx.model_type in table:
        return None
    if config_name == "IA3Config":
        return _FALLBACK_IA3.get(ctx.model_type, (None, None))[0]
    lora = constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
    return lora.get(ctx.model_type) or _FALLBACK_TARGETS.get(ctx.model_type)


def norm_module_suffixes(model: nn.Module) -> list[str]:
    """Leaf names of every normalisation layer (LayerNorm, RMSNorm…), for models peft has no table for."""
    return sorted({name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if "Norm" in type(mod).__name__})


def _adalora_step(model: nn.Module, step: int) -> None:
    # AdaLoRA reallocates rank budget during training; without this call it degenerates to plain LoRA.
    # peft's AdaLoraModel method; nn.Module's stubs type every attribute as Tensor | Module
    model.base_model.update_and_allocate(step)  # type: ignore[union-attr, operator]


def _needs_kv_cache(ctx: MethodContext) -> str | None:
    if ctx.architecture == "encoder":
        return "prefix tuning injects past key/values, which encoder-only models do not accept"
    if ctx.task_kind == "classification" and decoding.transformers_renamed_cache():
        # peft's sequence-classification wrapper looks for a `past_key_values` parameter on the model's forward
        # and raises without one (measured: LlamaForSequenceClassification on transformers 5)
        return ("peft's prefix tuning for sequence classification needs a model forward with `past_key_values`, "
                "which this transformers renamed to `cache`")
    # Causal LMs decode through `decoding.bridge_prefix_generation`; training (and the estimator) is unaffected
    if ctx.decodes and ctx.architecture == "encoder-decoder" and decoding.transformers_renamed_cache():
        return ("peft's prefix tuning cannot decode an encoder-decoder with this transformers (its KV cache "
                "argument is now `cache`): decoding would ignore the prefix")
    return None


def _needs_cuda_bnb(ctx: MethodContext) -> str | None:
    if not ctx.device.startswith("cuda"):
        return "QLoRA's 4-bit base layers (bitsandbytes NF4) need a CUDA device; this run is on " + ctx.device
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return "QLoRA needs bitsandbytes: pip install bitsandbytes"
    return None


# Every peft method, applied through its declared peft config (`peftbench.method_declarations`), whose fields are
# its valid overrides; some need a check of the device or a hook after each optimizer step.
_TORCH_SIDE: dict[str, dict[str, Any]] = {"qlora": {"check": _needs_cuda_bnb}, "adalora": {"step_hook": _adalora_step},
                                          "prefix_tuning": {"check": _needs_kv_cache}}
for _declaration in DECLARATIONS.values():
    if _declaration.peft_config is not None:
        register(declared(_declaration.name, _peft_applier(_declaration.peft_config),
                          **_TORCH_SIDE.get(_declaration.name, {})))
