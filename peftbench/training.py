"""The training loop: plain PyTorch, read top to bottom (no Trainer), so every step costs what it shows.

`benchmarks/harness_overhead.py` compares its step time with a hand-written loop on the same model.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
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


def train(model: torch.nn.Module, batches: Iterator[dict[str, torch.Tensor]], optimizer: torch.optim.Optimizer,
          scheduler: Any, max_steps: int, max_grad_norm: float, device: str,
          step_hook: Callable[[torch.nn.Module, int], None] | None = None,
          on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    result = TrainResult()
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    start = time.perf_counter()
    for step in range(max_steps):
        batch = {k: v.to(device) for k, v in next(batches).items()}
        loss = model(**batch).loss
        loss.backward()
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        if step_hook is not None:
            step_hook(model, step)
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        loss_value = float(loss.detach())
        if loss_value != loss_value:  # NaN: stop now; the run is recorded as failed with this reason
            raise FloatingPointError(f"loss became NaN at step {step}")
        result.tokens += count_tokens(batch)
        result.loss_curve.append((step, round(loss_value, 5)))
        if on_step is not None:
            on_step(step, loss_value)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    result.seconds = time.perf_counter() - start
    result.steps = max_steps
    return result
