"""Every method that peft implements, registered with peftbench's defaults.

Learning rates: PEFT methods train few parameters from a small or zero init and need step sizes one to
three orders of magnitude above full fine-tuning (LoRA paper App. D; "LoRA Without Regret", 2025: ~10x;
prompt tuning 0.3 with Adafactor in Lester et al. 2021). The defaults below suit the short budgets of
peftbench's CPU suites; override any of them with `methods.NAME.KEY=VALUE`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from peftbench.methods import decoding
from peftbench.methods.base import Method, MethodContext, register


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


def default_target_modules(config_name: str, model: nn.Module, ctx: MethodContext) -> list[str] | str | None:
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
    model.base_model.update_and_allocate(step)


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


_LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": None, "learning_rate": 5e-4}


def _register_peft(name: str, family: str, description: str, defaults: dict[str, Any], config_name: str,
                   **options: Any) -> None:
    """A method peft implements: applied through `config_name`, whose fields are its valid overrides."""
    register(Method(name, family, description, defaults, _peft_applier(config_name), peft_config=config_name,
                    **options))


for name, extra, description in [
    ("lora", {}, "Low-rank update B·A on attention projections (Hu et al. 2021)"),
    ("dora", {"use_dora": True}, "LoRA with a learned magnitude vector (Liu et al. 2024)"),
    ("rslora", {"use_rslora": True}, "LoRA scaled by alpha/sqrt(r), stable at high rank (Kalajdzievski 2023)"),
]:
    _register_peft(name, "reparameterization", description, {**_LORA, **extra}, "LoraConfig")

_register_peft("qlora", "reparameterization", "LoRA on a 4-bit NF4-quantised frozen base (Dettmers et al. 2023)",
               {**_LORA, "learning_rate": 2e-4}, "LoraConfig", quantize_4bit=True, check=_needs_cuda_bnb)
_register_peft("adalora", "reparameterization", "LoRA with SVD-based adaptive rank allocation (Zhang et al. 2023)",
               {"init_r": 12, "target_r": 8, "lora_alpha": 16, "target_modules": None, "total_step": None,
                "learning_rate": 5e-4}, "AdaLoraConfig", step_hook=_adalora_step)
_register_peft("loha", "reparameterization", "Low-rank Hadamard product update (Hyeon-Woo et al. 2022)",
               {"r": 8, "alpha": 16, "target_modules": None, "learning_rate": 5e-4}, "LoHaConfig")
_register_peft("lokr", "reparameterization", "Low-rank Kronecker product update (LyCORIS)",
               {"r": 8, "alpha": 16, "target_modules": None, "learning_rate": 5e-4}, "LoKrConfig")
_register_peft("vera", "reparameterization", "Shared frozen random low-rank pair, trained scaling vectors "
               "(Kopiczko et al. 2024)", {"r": 256, "target_modules": None, "learning_rate": 5e-3}, "VeraConfig")
_register_peft("oft", "reparameterization", "Orthogonal fine-tuning: block-diagonal rotation of weights "
               "(Qiu et al. 2023)", {"r": 0, "oft_block_size": 32, "target_modules": None, "learning_rate": 5e-4},
               "OFTConfig")
_register_peft("boft", "reparameterization", "Butterfly-factorised orthogonal fine-tuning (Liu et al. 2024)",
               {"boft_block_size": 4, "boft_n_butterfly_factor": 1, "target_modules": None, "learning_rate": 5e-4},
               "BOFTConfig")
_register_peft("ia3", "adapter", "Learned rescaling of keys, values and FFN activations (Liu et al. 2022)",
               {"target_modules": None, "feedforward_modules": None, "learning_rate": 3e-3}, "IA3Config")
_register_peft("ln_tuning", "selective", "Tune only the LayerNorm/RMSNorm parameters (Zhao et al. 2023)",
               {"target_modules": None, "learning_rate": 1e-3}, "LNTuningConfig")
_register_peft("prompt_tuning", "soft_prompt", "Learned virtual tokens prepended to the input embeddings "
               "(Lester et al. 2021)", {"num_virtual_tokens": 20, "learning_rate": 3e-2}, "PromptTuningConfig")
_register_peft("prefix_tuning", "soft_prompt", "Learned key/value prefixes at every layer (Li & Liang 2021)",
               {"num_virtual_tokens": 20, "learning_rate": 5e-3}, "PrefixTuningConfig", check=_needs_kv_cache,
               architectures=("decoder", "encoder-decoder"), applicability=2)  # 2: decodes on causal LMs
_register_peft("p_tuning", "soft_prompt", "Virtual tokens produced by a small MLP prompt encoder "
               "(Liu et al. 2021)", {"num_virtual_tokens": 20, "encoder_hidden_size": 128, "learning_rate": 5e-3},
               "PromptEncoderConfig")
