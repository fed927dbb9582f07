"""Bottleneck adapter layer and the function that inserts it into a transformers model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

# Output projections of attention and feed-forward blocks, per transformers `model_type`.
TARGETS: dict[str, tuple[str, ...]] = {
    "bert": ("attention.output.dense", "output.dense"),
    "roberta": ("attention.output.dense", "output.dense"),
    "deberta-v2": ("attention.output.dense", "output.dense"),
    "llama": ("self_attn.o_proj", "mlp.down_proj"),
    "mistral": ("self_attn.o_proj", "mlp.down_proj"),
    "qwen2": ("self_attn.o_proj", "mlp.down_proj"),
    "gemma2": ("self_attn.o_proj", "mlp.down_proj"),
    "phi3": ("self_attn.o_proj", "mlp.down_proj"),
    "gpt2": ("attn.c_proj", "mlp.c_proj"),
    "t5": ("SelfAttention.o", "EncDecAttention.o", "DenseReluDense.wo"),
    "bart": ("self_attn.out_proj", "encoder_attn.out_proj", "fc2"),
}
CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"


class BottleneckAdapter(nn.Module):
    """`y = base(x); y + up(act(down(y)))`, with `up` zero-initialised so training starts from the base model."""

    def __init__(self, base_layer: nn.Module, out_features: int, bottleneck: int) -> None:
        super().__init__()
        self.base_layer = base_layer
        weight = next(base_layer.parameters())
        dtype = weight.dtype if weight.is_floating_point() else torch.float32
        self.adapter_down = nn.Linear(out_features, bottleneck, device=weight.device, dtype=dtype)
        self.adapter_up = nn.Linear(bottleneck, out_features, device=weight.device, dtype=dtype)
        self.act = nn.GELU()
        if weight.device.type != "meta":
            nn.init.zeros_(self.adapter_up.weight)
            nn.init.zeros_(self.adapter_up.bias)

    @property
    def weight(self) -> torch.Tensor:
        # Models read the wrapped projection's weight (T5's feed-forward casts to `wo.weight.dtype`), as
        # they do through peft's layers, which expose their base layer's weight the same way.
        return self.base_layer.weight  # type: ignore[return-value]  # nn.Module types it as Tensor | Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.base_layer(x)
        return hidden + self.adapter_up(self.act(self.adapter_down(hidden)))


def _out_features(layer: nn.Module) -> int:
    if hasattr(layer, "out_features"):
        return int(layer.out_features)  # type: ignore[arg-type]  # nn.Module types it as Tensor | Module
    return int(layer.weight.shape[-1])  # type: ignore[index]  # GPT-2's Conv1D stores (in, out)


def add_bottleneck_adapters(model: nn.Module, model_type: str, reduction_factor: int = 16,
                            target_modules: list[str] | None = None) -> list[str]:
    """Freeze the model, insert adapters after every target projection; return the wrapped module names."""
    suffixes = tuple(target_modules or TARGETS.get(model_type, ()))
    if not suffixes:
        raise ValueError(f"no bottleneck-adapter targets known for model_type '{model_type}'; "
                         "pass methods.adapter.target_modules=[...]")
    model.requires_grad_(False)
    wrapped = []
    for name, module in list(model.named_modules()):
        if not name.endswith(suffixes) or isinstance(module, BottleneckAdapter) or ".base_layer" in name:
            continue
        if not any(isinstance(module, t) for t in (nn.Linear,)) and not hasattr(module, "nf"):
            continue
        out_features = _out_features(module)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, BottleneckAdapter(module, out_features, max(1, out_features // reduction_factor)))
        wrapped.append(name)
    if not wrapped:
        raise ValueError(f"no module matched bottleneck-adapter targets {list(suffixes)}")
    return wrapped


def save_bottleneck(model: nn.Module, directory: Path, config: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    tensors = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    save_file(tensors, str(directory / WEIGHTS_NAME))
    (directory / CONFIG_NAME).write_text(json.dumps({"peft_type": "BOTTLENECK", **config}, indent=2))


def load_bottleneck(model: nn.Module, directory: Path, model_type: str) -> nn.Module:
    """Insert adapters as saved and load their weights (safetensors only)."""
    from safetensors.torch import load_file

    config = json.loads((Path(directory) / CONFIG_NAME).read_text())
    add_bottleneck_adapters(model, model_type, config["reduction_factor"], config.get("target_modules"))
    missing = model.load_state_dict(load_file(str(Path(directory) / WEIGHTS_NAME)), strict=False)
    if missing.unexpected_keys:
        raise ValueError(f"adapter weights do not match the model: {missing.unexpected_keys[:3]}")
    return model
