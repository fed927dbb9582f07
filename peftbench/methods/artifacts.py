"""Saving what a run trained, in the format a user would load it back from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from peftbench.methods.base import Method, directory_bytes
from peftbench.methods.bottleneck.layer import save_bottleneck


def save_trained(method: Method, model: nn.Module, directory: Path, hyperparameters: dict[str, Any],
                 model_type: str) -> int:
    """Save the trained part of `model` into `directory`; return its size in bytes.

    peft methods: peft's own format (`PeftModel.from_pretrained` loads it). Full fine-tuning: the whole
    model with `save_pretrained` (safetensors). BitFit and bottleneck adapters: the trained tensors as
    safetensors plus an `adapter_config.json`, mirroring peft's layout.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if method.uses_peft or method.name == "full":
        model.save_pretrained(str(directory))  # type: ignore[operator]  # nn.Module types it as Tensor | Module
    elif method.name == "adapter":
        save_bottleneck(model, directory, {"reduction_factor": hyperparameters["reduction_factor"],
                                           "target_modules": hyperparameters.get("target_modules"),
                                           "model_type": model_type})
    else:
        from safetensors.torch import save_file

        tensors = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(tensors, str(directory / "adapter_model.safetensors"))
        (directory / "adapter_config.json").write_text(json.dumps({"peft_type": method.name.upper()}))
    return directory_bytes(directory)


def trained_bytes(model: nn.Module) -> int:
    """Bytes the trained tensors would take as safetensors (their data; the JSON header is a few KB)."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
