"""Load a model and tokenizer for a task kind, from the catalogue, a local directory or the hub."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peftbench.errors import MethodNotApplicable, UserError, shown
from peftbench.models.catalogue import architecture_family, resolve_model


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    family: str
    model_type: str
    source: str  # packaged | local | hub
    path: str


def load_config(name: str, trust_remote_code: bool = False):
    from transformers import AutoConfig

    path, source = resolve_model(name)
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code), path, source
    except (OSError, ValueError) as exc:  # missing, offline, not a transformers config, unknown model type
        if not trust_remote_code and "trust_remote_code" in str(exc):
            raise UserError(f"model {shown(name)} ships its own Python code (auto_map in its config.json), which "
                            "runs only with trust_remote_code=true: pass that if you trust the code") from None
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"cannot load model {shown(name)} ({source}): {first}") from None


def allow_remote_model(config, task_kind: str, trust_remote_code: bool) -> None:
    """Let `AutoModel*.from_config(config)` build a model folder's own class where the user trusts its code.

    transformers builds a class named in the config's `auto_map` only when `from_config` is given the flag,
    and then registers that class for the config's class. peftbench's estimator and the plan's meta-device
    checks build through `from_config` without it, so the model is built here once, with the user's flag, on
    the meta device (no memory, no weights)."""
    import warnings

    import torch

    from peftbench.estimate.build import model_class

    if not trust_remote_code or not getattr(config, "auto_map", None):
        return
    try:
        auto_class = model_class(config, task_kind)
    except MethodNotApplicable:
        return  # the runs are recorded as skipped
    if auto_class.__name__ in config.auto_map:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            auto_class.from_config(config, trust_remote_code=trust_remote_code)


def load_tokenizer(path: str, family: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if family == "decoder":
        tokenizer.padding_side = "left"  # generation continues from the last real token
    return tokenizer


def tokenizer_for(name: str, trust_remote_code: bool = False):
    """A catalogue model's or local directory's tokenizer, set up for its architecture (no weights loaded)."""
    config, path, _ = load_config(name, trust_remote_code)
    return load_tokenizer(path, architecture_family(config), trust_remote_code)


def load_for_task(name: str, task_kind: str, num_labels: int | None = None, dtype: str = "fp32",
                  quantize_4bit: bool = False, trust_remote_code: bool = False, tokenizer=None) -> LoadedModel:
    """Model with the head the task kind needs; raises MethodNotApplicable for impossible pairings."""
    import torch
    import transformers as tf

    config, path, source = load_config(name, trust_remote_code)
    family = architecture_family(config)
    if task_kind in ("generation", "multiple_choice") and family == "encoder":
        raise MethodNotApplicable(f"{task_kind} needs a decoder or encoder-decoder model; {name} is an encoder")
    kwargs: dict[str, Any] = {"dtype": {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype],
                              "trust_remote_code": trust_remote_code}
    if quantize_4bit:
        kwargs["quantization_config"] = tf.BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
    tokenizer = tokenizer or load_tokenizer(path, family, trust_remote_code)
    if task_kind == "classification":
        model = tf.AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels, **kwargs)
        model.config.pad_token_id = tokenizer.pad_token_id
    elif family == "encoder-decoder":
        model = tf.AutoModelForSeq2SeqLM.from_pretrained(path, **kwargs)
    else:
        model = tf.AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if quantize_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return LoadedModel(model, tokenizer, family, config.model_type, source, path)
