"""QLoRA's 4-bit base, emulated so that the rest of the step can still be traced.

bitsandbytes' 4-bit layers need CUDA, so the frozen base linears are replaced by `Linear4bit`, which
holds what bitsandbytes holds (an NF4 weight packed two values per byte, double-quantised absmax: one
8-bit scale per 64 values plus one fp32 scale per 256 of those) and computes what it computes: the input
cast to the compute dtype, a weight-sized dequantised temporary in forward and again in backward, the
output cast back to the input dtype, and nothing saved for backward but the packed weight.
`prepare_model_for_kbit_training` upcasts every other parameter (embeddings, norms, lm_head) to fp32,
which `upcast_non_linear` reproduces: on a large vocabulary that is GBs, and fp32 logits.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

import torch
from torch import nn

# Linear layers transformers leaves unquantised (output embeddings and task heads).
SKIP = ("lm_head", "score", "classifier", "qa_outputs", "out_proj")
BLOCK = 64  # NF4 quantisation block (values per absmax)
BLOCK2 = 256  # double quantisation block (absmax values per fp32 scale)


def _quantised(name: str, module: nn.Module, keep: AbstractSet[str] = frozenset()) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return isinstance(module, nn.Linear) and "lora_" not in name and not name.endswith(SKIP) \
        and leaf not in SKIP and not keep & set(name.split("."))


def kept_in_fp32(model: nn.Module) -> set[str]:
    """Modules transformers never quantises because the model keeps them in fp32 (T5's feed-forward output
    `wo`, whose input T5 casts to the weight's dtype: a packed uint8 weight would make it uint8)."""
    # peft's wrapper method; nn.Module's stubs type every attribute as Tensor | Module
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # type: ignore[operator]
    return set(getattr(base, "_keep_in_fp32_modules", None) or ()) | \
        set(getattr(base, "_keep_in_fp32_modules_strict", None) or ())


def upcast_non_linear(model: nn.Module) -> None:
    keep = kept_in_fp32(model)
    quantised = {id(m.weight) for n, m in model.named_modules() if _quantised(n, m, keep)}
    for param in model.parameters():
        if id(param) not in quantised and param.dtype in (torch.float16, torch.bfloat16):
            param.data = param.data.to(torch.float32)


class _MatMul4bit(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, packed, out_features: int):
        weight = torch.empty((out_features, x.shape[-1]), dtype=x.dtype, device=x.device)  # dequantised
        ctx.save_for_backward(packed)
        ctx.shape = (out_features, x.shape[-1])
        return x @ weight.t()

    @staticmethod
    def backward(ctx, grad):
        weight = torch.empty(ctx.shape, dtype=grad.dtype, device=grad.device)  # dequantised again
        return grad @ weight, None, None


class Linear4bit(nn.Module):
    def __init__(self, linear: nn.Linear, compute_dtype: torch.dtype) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        numel = linear.weight.numel()
        device = linear.weight.device
        packed = nn.Parameter(torch.empty((numel + 1) // 2, dtype=torch.uint8, device=device), requires_grad=False)
        # bitsandbytes' own marker on its 4-bit parameters, which torch's stubs do not declare
        packed.quant_state = True  # type: ignore[attr-defined]  # count_parameters counts two values per byte
        self.weight = packed
        scales = -(-numel // BLOCK)
        self.register_buffer("absmax", torch.empty(scales + 4 * -(-scales // BLOCK2), dtype=torch.uint8,
                                                   device=device))
        self.bias = linear.bias
        self.compute_dtype = compute_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inp_dtype = x.dtype
        out = _MatMul4bit.apply(x.to(self.compute_dtype), self.weight, self.out_features)
        if self.bias is not None:
            out = out + self.bias.to(self.compute_dtype)
        return out.to(inp_dtype)


def quantize_base_linears(model: nn.Module, compute_dtype: torch.dtype = torch.bfloat16) -> int:
    """Replace every quantisable frozen linear by `Linear4bit`; returns how many were replaced."""
    keep = kept_in_fp32(model)
    targets = [(n, m) for n, m in model.named_modules() if _quantised(n, m, keep)]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, Linear4bit(module, compute_dtype))
    return len(targets)
