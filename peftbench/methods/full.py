"""Full fine-tuning and BitFit: methods that train (a subset of) the model's own parameters."""

from __future__ import annotations

from typing import Any

from torch import nn

from peftbench.errors import MethodNotApplicable
from peftbench.methods.base import MethodContext, declared, register

# Heads that a task adds on top of the backbone; they start untrained, so every method must train them.
HEAD_NAMES = ("classifier", "score", "qa_outputs")


def _full(model: nn.Module, kwargs: dict[str, Any], ctx: MethodContext) -> nn.Module:
    model.requires_grad_(True)
    return model


def _bitfit(model: nn.Module, kwargs: dict[str, Any], ctx: MethodContext) -> nn.Module:
    # Written here rather than through peft: peft has no BitFit. Its closest method, BEFT, adds *new* bias
    # vectors to chosen linear layers; BitFit (Ben Zaken et al. 2022) updates the model's *existing* biases,
    # LayerNorm biases included, which is what this selects.
    biases = 0
    for name, param in model.named_parameters():
        is_bias = name.endswith(".bias")
        biases += is_bias
        param.requires_grad_(is_bias or is_head_parameter(name))
    if not biases:
        # Llama-style decoders have no bias terms at all: BitFit would train nothing but the head.
        raise MethodNotApplicable(f"{ctx.model_type} has no bias parameters for BitFit to train")
    return model


def is_head_parameter(name: str) -> bool:
    return any(part in HEAD_NAMES for part in name.split(".")[:2])


register(declared("full", _full))
register(declared("bitfit", _bitfit))
