"""Trace one training step (forward, backward, optimizer step) of a fake-tensor model.

The step mirrors what a training loop does: one optimizer step has already run (Adam's states exist),
the loss is taken from the model's output and the output object is dropped before backward (as
`transformers.Trainer.compute_loss` does), gradients are clipped, the optimizer steps and gradients are
freed with `zero_grad(set_to_none=True)` — the harness's own step, `peftbench.training.train_step`.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from peftbench.estimate.build import DTYPES, build_wrapped, materialise_fake
from peftbench.estimate.cuda_kernels import as_on_cuda
from peftbench.estimate.tracer import Tracker
from peftbench.estimate.tracer_math import CATEGORIES, candidates
from peftbench.training import train_step

PHASES = ("forward", "backward", "optimizer")


@dataclass
class Shape:
    """Everything that changes the traced memory besides the model and method."""

    batch_size: int
    seq_len: int
    dtype: str = "bf16"
    mixed_precision: str | None = None
    optimizer: str = "adamw"
    gradient_checkpointing: bool = False
    device: str = "cuda"  # which device's optimizer implementation to emulate (cuda: foreach, cpu: single)
    num_labels: int = 2


@dataclass
class TraceResult:
    trainable_params: int
    total_params: int
    # phase -> {category: bytes, "peak": bytes, "candidates": {tokens: {category: bytes}}}
    phases: dict[str, dict[str, Any]]
    flops: dict[str, float]
    matmul_bytes: float
    other_bytes: float
    kernels: int
    logits_bytes: int = 0  # fp32 logits of a language-model head: see `logits_bytes`
    notes: list[str] = field(default_factory=list)
    events: dict[str, Any] | None = None  # phase -> `Tracker.events` array, when asked for (`shape_fit`)


def make_inputs(model, config, task_kind: str, shape: Shape) -> dict[str, torch.Tensor]:
    from peftbench.models.catalogue import architecture_family

    b, length = shape.batch_size, shape.seq_len
    # No attention mask: an unpadded batch has none, and transformers would build a full 4-D mask for
    # fake tensors (it takes them for tracing) that a real run never allocates.
    inputs: dict[str, torch.Tensor] = {"input_ids": torch.zeros((b, length), dtype=torch.long)}
    if task_kind == "classification":
        inputs["labels"] = torch.zeros((b,), dtype=torch.long)
    else:
        inputs["labels"] = torch.zeros((b, length), dtype=torch.long)
    if architecture_family(config) == "encoder-decoder" and task_kind == "classification":
        inputs["decoder_input_ids"] = torch.zeros((b, length), dtype=torch.long)
    return inputs


def make_optimizer(params: Sequence[torch.Tensor], shape: Shape) -> torch.optim.Optimizer:
    foreach = shape.device.startswith("cuda")  # torch's default: foreach on CUDA, per-tensor on CPU
    if shape.optimizer == "sgd":
        return torch.optim.SGD(params, lr=1e-3, foreach=foreach)
    if shape.optimizer == "adamw8bit":
        # bitsandbytes' 8-bit states are added analytically (see `eight_bit_states`); the update itself
        # is one fused kernel with no weight-sized temporaries, like a stateless SGD step.
        return torch.optim.SGD(params, lr=1e-3, foreach=foreach)
    return torch.optim.AdamW(params, lr=1e-3, foreach=foreach)


def eight_bit_states(params: Sequence[torch.Tensor]) -> int:
    """bitsandbytes AdamW8bit: two 8-bit states with one fp32 absmax per 256 values; tensors under 4096
    values keep 32-bit states (bitsandbytes' `min_8bit_size`)."""
    total = 0
    for p in params:
        n = p.numel()
        total += 2 * (n + 4 * -(-n // 256)) if n >= 4096 else 8 * n
    return total


@contextlib.contextmanager
def _collections_of_new_objects_only() -> Iterator[None]:
    """Move every object alive before the trace out of the collector's reach while it runs.

    A trace collects garbage at each phase's end (`_phase_end`) so that cycles cannot keep temporaries alive;
    a full collection walks every object transformers and torch created at import, ~0.15 s each, half the
    time of a two-layer trace. Frozen objects are not walked; they are older than the trace, so none of the
    trace's temporaries is among them. They are handed back to the collector afterwards."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def trace_step(config, method, hyperparameters: dict[str, Any], task_kind: str, shape: Shape,
               keep_events: bool = False) -> TraceResult:
    with _collections_of_new_objects_only():
        return _trace_step(config, method, hyperparameters, task_kind, shape, keep_events)


def _trace_step(config, method, hyperparameters: dict[str, Any], task_kind: str, shape: Shape,
                keep_events: bool) -> TraceResult:
    from torch._subclasses.fake_tensor import FakeTensorMode

    from peftbench.errors import MethodNotApplicable
    from peftbench.methods import count_parameters

    if shape.gradient_checkpointing and method.name == "prefix_tuning":
        # transformers' checkpointed decoder layers drop the cache (`cache=None`) that carries the virtual
        # tokens' keys/values, while the attention mask still covers them: a real step fails the same way
        # ("tensor a (L) must match tensor b (L + virtual tokens)"), checked on SmolLM2 with transformers 5.
        raise MethodNotApplicable("prefix tuning cannot train with gradient checkpointing: transformers' "
                                  "checkpointed layers drop the past key/values that hold the virtual tokens")
    model = build_wrapped(config, method, hyperparameters, task_kind,
                         "fp32" if shape.mixed_precision else shape.dtype, shape.num_labels,
                          runs_on=shape.device)
    trainable, total = count_parameters(model)
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    materialise_fake(model, fake_mode)
    model.train()
    if shape.gradient_checkpointing:
        # transformers' method; nn.Module's stubs type every attribute as Tensor | Module
        model.gradient_checkpointing_enable(  # type: ignore[operator]
            gradient_checkpointing_kwargs={"use_reentrant": False})
    params = [p for p in model.parameters() if p.requires_grad]
    tracker = Tracker()
    notes: list[str] = []
    on_device = as_on_cuda() if shape.device == "cuda" else contextlib.nullcontext()
    with fake_mode, tracker, on_device:
        tracker.mark(list(model.parameters()) + list(model.buffers()), "weights")
        optimizer = make_optimizer(params, shape)
        _warm_optimizer(optimizer, params, tracker)
        tracker.peaks.clear()
        inputs = make_inputs(model, config, task_kind, shape)
        hook = (lambda m, _step: notes.extend(_step_hook(method, m))) if method.step_hook is not None else None
        tracker.phase = "forward"
        # The harness's own step (no LR scheduler: it allocates nothing); the phase callbacks mark and collect.
        train_step(model, [inputs], optimizer, None, params, 1, 1.0, hook,
                   forward_context=lambda: _forward_context(shape, tracker),
                   on_phase_end=lambda name: _phase_end(name, model, tracker),
                   clip_foreach=shape.device.startswith("cuda"))
    events = {p: tracker.events(p) for p in PHASES if p in tracker.peaks}
    phases: dict[str, dict[str, Any]] = {p: {**tracker.breakdown(p), "peak": tracker.peaks[p].bytes} for p in events}
    if shape.device == "cpu":
        _shift(phases, events, "weights", -unread_mapped_bytes(tracker, checkpoint_dtype(config)))
    if shape.optimizer == "adamw8bit":
        _shift(phases, events, "optimizer_states", eight_bit_states(params))
    for p, numbers in phases.items():
        numbers["candidates"] = candidates(events[p], shape.batch_size * shape.seq_len)
    cost = tracker.cost
    return TraceResult(trainable, total, phases, dict(cost.flops), cost.matmul_bytes, cost.other_bytes,
                       cost.kernels, logits_bytes(config, task_kind, shape), notes, events if keep_events else None)


def logits_bytes(config, task_kind: str, shape: Shape) -> int:
    """The fp32 logits a language-model loss upcasts to: one vocabulary-wide row per token, the largest
    single allocation of the step, and the one the CUDA caching allocator most often cannot place in
    freed blocks (`core.device_memory`). Classification heads' logits are negligible."""
    if task_kind == "classification":
        return 0
    return shape.batch_size * shape.seq_len * int(getattr(config, "vocab_size", 0) or 0) * 4


def _shift(phases: dict[str, dict[str, Any]], events: dict[str, Any], category: str, delta: int) -> None:
    """Add bytes the trace cannot see to one category, at each phase's peak and after every op."""
    for p, numbers in phases.items():
        numbers[category] += delta
        numbers["peak"] += delta
        events[p][:, CATEGORIES.index(category)] += delta


PAGE_BYTES = 4096


def checkpoint_dtype(config) -> torch.dtype:
    """The dtype the checkpoint stores (`config.dtype`); configs that do not say are taken as fp32."""
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


def unread_mapped_bytes(tracker: Tracker, stored: torch.dtype) -> int:
    """Bytes of frozen embedding tables that stay out of RSS on CPU.

    transformers loads safetensors weights of the checkpoint's own dtype as copy-on-write file mappings,
    so a weight is resident only in the pages that are read (measured: MiniLM's 47 MB word embeddings add
    under 1 MB after a step). A frozen table that only embedding lookups read (not tied to an output head,
    not updated) is resident in at most one page per looked-up row. Tables cast to another dtype at load
    are copied, hence fully resident.
    """
    unread = 0
    for uid, (rows, row_bytes, dtype) in tracker.sparse_tables().items():
        if dtype != stored:
            continue
        size = tracker.size[uid]
        unread += max(0, size - rows * (row_bytes + PAGE_BYTES))  # a row touches ~1 + row_bytes/PAGE_BYTES pages
    return unread


def _warm_optimizer(optimizer, params, tracker: Tracker) -> None:
    """One step on zero gradients so that the optimizer's states exist, as after the first real step."""
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    states = [t for s in optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    tracker.mark(states, "optimizer_states")


@contextlib.contextmanager
def _forward_context(shape: Shape, tracker: Tracker) -> Iterator[None]:
    """Mark every tensor autograd saves for backward as an activation; autocast under mixed precision."""
    def pack(t: torch.Tensor) -> torch.Tensor:
        tracker.mark([t], "activations")
        return t

    autocast = (torch.autocast("cpu", dtype=DTYPES[shape.mixed_precision]) if shape.mixed_precision
                else contextlib.nullcontext())
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
        yield


def _phase_end(name: str, model, tracker: Tracker) -> None:
    # Module hooks and reference cycles must not keep temporaries alive past their use: collect at each end.
    if name == "forward":
        gc.collect()
        tracker.phase = "backward"
    elif name == "backward":
        tracker.mark([p.grad for p in model.parameters() if p.grad is not None], "gradients")
        gc.collect()
        tracker.phase = "optimizer"


def _step_hook(method, model) -> list[str]:
    from torch._subclasses.fake_tensor import DataDependentOutputException

    try:
        method.step_hook(model, 1)
    except (DataDependentOutputException, RuntimeError) as exc:
        return [f"{method.name}'s per-step hook could not be traced ({type(exc).__name__}); its memory is omitted"]
    return []
