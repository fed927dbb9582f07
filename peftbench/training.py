"""The training loop: plain PyTorch, read top to bottom (no Trainer), so every step costs what it shows.

`benchmarks/harness_overhead.py` compares its step time with a hand-written loop on the same model.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from peftbench.tasks.base import count_tokens


@dataclass
class TrainResult:
    steps: int = 0
    seconds: float = 0.0
    tokens: int = 0
    loss_curve: list[tuple[int, float]] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def rng_preserved(cuda: bool = False) -> Iterator[None]:
    """Run a block without moving the seeded generators a run draws from (Python's, torch's CPU one and,
    with `cuda`, the CUDA ones): what happens inside — e.g. the estimator tracing a model on a cache miss —
    cannot change the run's initialisation, dropout or batches."""
    state = random.getstate()
    devices = list(range(torch.cuda.device_count())) if cuda and torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(state)


def batch_indices(n_examples: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Endless epochs of shuffled index batches (the last short batch of an epoch is kept)."""
    rng = random.Random(seed)
    while True:
        order = list(range(n_examples))
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            yield order[start:start + batch_size]


def shuffled_batches(features: list[dict[str, Any]], batch_size: int, collate: Callable, seed: int
                     ) -> Iterator[dict[str, torch.Tensor]]:
    for indices in batch_indices(len(features), batch_size, seed):
        yield collate([features[i] for i in indices])


def rank_batches(batches: Iterator[dict[str, torch.Tensor]], rank: int, world_size: int
                 ) -> Iterator[dict[str, torch.Tensor]]:
    """Rank `rank`'s share of the micro-batches: every `world_size`-th, from its own offset.

    A step of `world_size` ranks with `accumulation` micro-batches each then covers exactly the micro-batches that
    one process with `world_size x accumulation` accumulation steps covers in that step (each micro-batch padded as
    it was), and data-parallel averaging of the ranks' gradients equals that process's accumulated mean: the two
    runs follow the same loss curve, up to the order of floating-point sums (and dropout's random masks, which
    each rank draws from its own generator)."""
    import itertools

    return itertools.islice(batches, rank, None, world_size)


def longest_padded_batch(features: list[dict[str, Any]], batch_size: int, seed: int, steps: int) -> int:
    """The longest padded length among the batches a run will train on (what its peak memory depends on)."""
    batches = batch_indices(len(features), batch_size, seed)
    return max(max(len(features[i]["input_ids"]) for i in next(batches)) for _ in range(steps))


def make_optimizer(model: torch.nn.Module, learning_rate: float, weight_decay: float, max_steps: int,
                   warmup_ratio: float) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    warmup = max(1, int(max_steps * warmup_ratio))

    def schedule(step: int) -> float:  # linear warm-up, then linear decay to zero
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (max_steps - step) / max(1, max_steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


StepHook = Callable[[torch.nn.Module, int], None]


def train_step(model: torch.nn.Module, micro_batches: Iterable[dict[str, torch.Tensor]],
               optimizer: torch.optim.Optimizer, scheduler: Any, params: Sequence[torch.Tensor], step: int,
               max_grad_norm: float | None = 1.0, step_hook: StepHook | None = None,
               forward_context: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
               on_phase_end: Callable[[str], None] | None = None,
               clip_foreach: bool | None = None) -> list[torch.Tensor]:
    """One optimizer step over one or more micro-batches — the one step the harness, the CPU measurement,
    the GPU validation and the estimator's trace all run (torchtune's recipe order).

    Per micro-batch: forward (inside `forward_context`: autocast, saved-tensor hooks), loss divided by the
    number of micro-batches (so the accumulated gradient is the mean over them, as one batch that size
    would give when micro-batches are equal in size), backward. Then clip, `optimizer.step()`, the
    method's `step_hook(model, step)` (AdaLoRA's rank allocation reads the gradients, so it comes before
    `zero_grad`), `scheduler.step()`, `zero_grad(set_to_none=True)`. `on_phase_end` is called with
    "forward", "backward" (per micro-batch) and "optimizer", for callers that measure phases.
    Returns each micro-batch's detached, unscaled loss (no `.item()` here: fake tensors cannot sync).
    """
    micro_batches = list(micro_batches)
    count = len(micro_batches)
    losses = []
    for batch in micro_batches:
        with forward_context():
            loss = model(**batch).loss  # the output object (logits…) is dropped here, as in Trainer
        if on_phase_end is not None:
            on_phase_end("forward")
        losses.append(loss.detach())
        (loss / count if count > 1 else loss).backward()  # no extra op at count 1: the trace stays as it was
        del loss
        if on_phase_end is not None:
            on_phase_end("backward")
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm, foreach=clip_foreach)
    optimizer.step()
    if step_hook is not None:
        step_hook(model, step)
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    if on_phase_end is not None:
        on_phase_end("optimizer")
    return losses


def enable_gradient_checkpointing(model: torch.nn.Module, method_name: str) -> None:
    """Recompute activations in backward instead of keeping them (transformers' non-reentrant checkpointing).

    For PEFT models the input embeddings are frozen, so their output does not require grad;
    `enable_input_require_grads` makes it do so, as peft's own recipes do, so that checkpointed blocks
    always have a grad-requiring input (needed by the reentrant variant, harmless for this one)."""
    from peftbench.errors import MethodNotApplicable

    if method_name == "prefix_tuning":
        # See `estimate.trace.trace_step`: checkpointed decoder layers drop the cache holding the virtual
        # tokens' keys/values while the attention mask still covers them, so the step fails.
        raise MethodNotApplicable("prefix tuning cannot train with gradient checkpointing: transformers' "
                                  "checkpointed layers drop the past key/values that hold the virtual tokens")
    if not getattr(model, "supports_gradient_checkpointing", True):
        raise MethodNotApplicable(f"{type(model).__name__} does not support gradient checkpointing")
    # The methods below are transformers' (or peft's); nn.Module's stubs type every attribute as Tensor | Module.
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 (the old name warns, goes in v6)
        model.activation_checkpointing_enable(  # type: ignore[operator]
            activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(  # type: ignore[operator]
            gradient_checkpointing_kwargs={"use_reentrant": False})
    if method_name != "full" and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()  # type: ignore[operator]


def train(model: torch.nn.Module, batches: Iterator[dict[str, torch.Tensor]], optimizer: torch.optim.Optimizer,
          scheduler: Any, max_steps: int, max_grad_norm: float, device: str,
          step_hook: StepHook | None = None,
          on_step: Callable[[int, float], None] | None = None, accumulation_steps: int = 1,
          mean_over_ranks: Callable[[float], float] | None = None) -> TrainResult:
    """`max_steps` optimizer steps, each over `accumulation_steps` micro-batches drawn from `batches`.

    In a run over several processes `mean_over_ranks` averages each step's loss over the ranks, so that the
    curve is the whole step's (and a NaN on any rank stops every rank at the same step)."""
    result = TrainResult()
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    start = time.perf_counter()
    for step in range(max_steps):
        micro = [{k: v.to(device) for k, v in next(batches).items()} for _ in range(accumulation_steps)]
        losses = train_step(model, micro, optimizer, scheduler, params, step, max_grad_norm, step_hook)
        loss_value = sum(float(loss) for loss in losses) / len(losses)
        if mean_over_ranks is not None:
            loss_value = mean_over_ranks(loss_value)
        if loss_value != loss_value:  # NaN: stop now; the run is recorded as failed with this reason
            raise FloatingPointError(f"loss became NaN at step {step}")
        result.tokens += sum(count_tokens(batch) for batch in micro)
        result.loss_curve.append((step, round(loss_value, 5)))
        if on_step is not None:
            on_step(step, loss_value)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    result.seconds = time.perf_counter() - start
    result.steps = max_steps
    return result
