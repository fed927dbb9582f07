"""What a CUDA training step runs that a fake-tensor trace on the CPU device would not.

The trace runs on fake CPU tensors, so ATen picks CPU kernels. Two of them keep more memory for backward
than their CUDA counterparts (seen on an H100 with `benchmarks/diagnose_saved_tensors.py`):

- dropout: the CPU path draws a noise tensor in the input's dtype and saves it (4 bytes per element in
  LoRA's fp32 adapter branch); CUDA's fused `native_dropout` saves a 1-byte bool mask. LoRA on
  Llama-3.1-8B at 4 x 1024 was over-predicted by 2.8 GiB (+6.6%) for this alone.
- scaled-dot-product attention with dropout or an additive mask (GPT-2, BERT, T5's position bias): the
  CPU falls back to the math path and saves the batch x heads x seq x seq scores and probabilities in
  fp32; CUDA's flash / memory-efficient kernels save the output and a log-sum-exp and recompute the rest
  in backward. T5-base full fine-tuning at 8 x 512 was over-predicted 7x.

`as_on_cuda()` routes both through the CUDA kernels' own fake implementations while tracing for a CUDA
profile. Without dropout or mask, the CPU's fused flash kernel already keeps what CUDA's does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F


@contextlib.contextmanager
def as_on_cuda() -> Iterator[None]:
    dropout, attention = F.dropout, F.scaled_dot_product_attention

    def fused_dropout(input, p=0.5, training=True, inplace=False):  # noqa: A002  (F.dropout's names)
        if not training or inplace or not 0.0 < p < 1.0:
            return dropout(input, p, training, inplace)
        return torch.ops.aten.native_dropout(input, p, True)[0]

    def fused_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                        enable_gqa=False):
        if attn_mask is None and dropout_p == 0.0:
            return attention(query, key, value, is_causal=is_causal, scale=scale, enable_gqa=enable_gqa)
        if enable_gqa and key.shape[-3] != query.shape[-3]:
            groups = query.shape[-3] // key.shape[-3]
            key, value = key.repeat_interleave(groups, -3), value.repeat_interleave(groups, -3)
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:  # as torch's dispatcher does before the efficient kernel
                attn_mask = torch.zeros(attn_mask.shape, dtype=query.dtype).masked_fill(~attn_mask, float("-inf"))
            attn_mask = attn_mask.expand(*query.shape[:-1], key.shape[-2])
        keep_lse = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
        return torch.ops.aten._scaled_dot_product_efficient_attention(
            query, key, value, attn_mask, keep_lse, dropout_p, is_causal, scale=scale)[0]

    F.dropout, F.scaled_dot_product_attention = fused_dropout, fused_attention
    try:
        yield
    finally:
        F.dropout, F.scaled_dot_product_attention = dropout, attention
