"""The bottleneck adapter method (adapter modules between layers)."""

from __future__ import annotations

from typing import Any

from torch import nn

from peftbench.errors import MethodNotApplicable
from peftbench.methods.base import MethodContext, declared, register
from peftbench.methods.bottleneck.layer import TARGETS, add_bottleneck_adapters
from peftbench.methods.full import is_head_parameter


def _adapter(model: nn.Module, kwargs: dict[str, Any], ctx: MethodContext) -> nn.Module:
    targets = kwargs.get("target_modules")
    if not targets and ctx.model_type not in TARGETS:
        raise MethodNotApplicable(f"no bottleneck-adapter placement known for '{ctx.model_type}'; "
                                  "set methods.adapter.target_modules")
    add_bottleneck_adapters(model, ctx.model_type, int(kwargs["reduction_factor"]), targets)
    for name, param in model.named_parameters():
        if "adapter_" in name or is_head_parameter(name):
            param.requires_grad_(True)
    return model


register(declared("adapter", _adapter))
