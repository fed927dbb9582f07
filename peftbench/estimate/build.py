"""Build a model from its config without weights and wrap it through the method registry.

The model is created on the meta device (no memory, ~0.05 s even for 8B), wrapped by the same
`Method.apply` the harness uses (peft cannot be applied inside `FakeTensorMode`, but works on meta), and
only then are its parameters replaced by fake CPU tensors for tracing. Replacement goes parameter by
parameter and keeps a memo so tied weights stay tied: `Module.to_empty()` unties them and crashes on
prompt tuning (both seen while building the estimator).
"""

from __future__ import annotations

import copy
from typing import Any, cast

import torch
from torch import nn

from peftbench.errors import MethodNotApplicable
from peftbench.models.catalogue import architecture_family
from peftbench.validation import check_task_kind

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Config keys that hold a layer count, across the architectures of the presets.
DEPTH_KEYS = ("num_hidden_layers", "num_layers", "n_layer", "num_decoder_layers", "encoder_layers",
              "decoder_layers")


def depth_of(config) -> int:
    return int(config.num_hidden_layers)


def depth_uniform(config) -> bool:
    """True when every stack has the same depth, so one number scales them all."""
    depths = {int(v) for k in DEPTH_KEYS if isinstance(v := config.to_dict().get(k), int)}
    return len(depths) == 1


def with_depth(config, layers: int):
    """A copy of `config` with every stack `layers` deep; per-layer lists keep their pattern."""
    config = copy.deepcopy(config)
    raw = config.to_dict()
    for key in DEPTH_KEYS:
        if isinstance(raw.get(key), int):
            setattr(config, key, layers)
    types = getattr(config, "layer_types", None)
    if isinstance(types, list) and types:
        config.layer_types = [types[i % len(types)] for i in range(layers)]
    if isinstance(getattr(config, "max_window_layers", None), int):
        config.max_window_layers = min(config.max_window_layers, layers)
    return config


def model_class(config, task_kind: str):
    import transformers as tf

    family = architecture_family(config)
    if task_kind == "classification":
        return tf.AutoModelForSequenceClassification
    check_task_kind(task_kind)
    if family == "encoder":
        raise MethodNotApplicable(f"{task_kind} needs a decoder or encoder-decoder model; "
                                  f"{config.model_type} is an encoder")
    return tf.AutoModelForSeq2SeqLM if family == "encoder-decoder" else tf.AutoModelForCausalLM


def build_wrapped(config, method, hyperparameters: dict[str, Any], task_kind: str, dtype: str,
                  num_labels: int = 2, total_steps: int = 1000, device: str = "meta",
                  runs_on: str = "cpu") -> nn.Module:
    """The wrapped model, exactly as the harness would wrap real weights.

    On "meta" (the estimator) it costs no memory; on a real device (benchmarks/gpu_validation.py) the
    weights are randomly initialised there, so a preset can be measured without downloading weights.
    `runs_on` is the device kind the prediction is for, where peft's wrapping differs by device.
    """
    from peftbench.methods import MethodContext, get_method

    if method.quantize_4bit and device != "meta":
        raise MethodNotApplicable("QLoRA on a real device needs the quantised checkpoint path (bitsandbytes)")
    config = copy.deepcopy(config)
    if task_kind == "classification":
        config.num_labels = num_labels
        if getattr(config, "pad_token_id", None) is None:  # decoders classify the last non-pad token
            config.pad_token_id = getattr(config, "eos_token_id", 0) or 0
        if getattr(config, "problem_type", None) is None:
            # What transformers infers from integer labels anyway; DeBERTa's own default path indexes the
            # labels with nonzero(), whose output shape fake tensors cannot know.
            config.problem_type = "single_label_classification"
    if architecture_family(config) == "encoder-decoder" and getattr(config, "decoder_start_token_id", None) is None:
        config.decoder_start_token_id = config.pad_token_id or 0  # hand-written T5 configs lack it
    with torch.device(device):
        model = model_class(config, task_kind).from_config(config, dtype=DTYPES[dtype])
    if method.quantize_4bit:
        from peftbench.estimate.qlora import upcast_non_linear

        upcast_non_linear(model)
    ctx = MethodContext(architecture=architecture_family(config), model_type=config.model_type,
                        task_kind=task_kind, device="cpu" if device == "meta" else device)
    hp = dict(hyperparameters)
    if "total_step" in hp and hp["total_step"] is None:
        hp["total_step"] = total_steps
    # QLoRA's own check demands CUDA + bitsandbytes; its wrapping is LoRA's, on an emulated 4-bit base.
    applier = get_method("lora") if method.quantize_4bit else method
    model = applier.apply(model, hp, ctx)
    if method.name == "adalora" and device == "meta" and runs_on == "cpu":
        # peft moves AdaLoRA's `ranknum` to the base layer's device by re-registering it as a new, trainable
        # Parameter: on a CUDA (or meta) base it trains, on a CPU base it stays frozen. Measured on an H100
        # (Llama-3.2-1B): peft counts 32 more trainable parameters, and autograd keeps each adapter's output.
        for name, param in model.named_parameters():
            if "ranknum" in name:
                param.requires_grad_(False)
    if method.quantize_4bit:
        from peftbench.estimate.qlora import quantize_base_linears

        quantize_base_linears(model)
    return model


def materialise_fake(model: nn.Module, fake_mode) -> None:
    """Swap every meta parameter and buffer for a fake CPU tensor of the same shape and dtype."""
    memo: dict[int, torch.Tensor] = {}
    keep: list[torch.Tensor] = []  # the replaced meta tensors stay alive so their ids cannot be reused

    def fake_like(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in memo:
            keep.append(t)
            with fake_mode:
                memo[id(t)] = torch.empty(t.shape, dtype=t.dtype, device="cpu")
        return memo[id(t)]

    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is None:
                continue
            if id(param) not in memo:
                new = nn.Parameter(fake_like(param), requires_grad=param.requires_grad)
                for attr in ("quant_state",):  # keeps count_parameters' 4-bit rule working
                    if hasattr(param, attr):
                        setattr(new, attr, getattr(param, attr))
                memo[id(param)] = new
            # a parameter's id maps to the Parameter made for it just above, never to a plain fake tensor
            module._parameters[name] = cast(nn.Parameter, memo[id(param)])
        for name, buf in list(module._buffers.items()):
            if buf is not None:
                module._buffers[name] = fake_like(buf)
