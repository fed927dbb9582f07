"""Harness overhead: time per training step through peftbench's trainer vs a plain PyTorch + peft loop.

Same model (packaged MiniLM), same LoRA config, same batches, same optimizer; the two loops alternate in
blocks within one process so machine noise hits both alike. Prints the ratio of median step times
(target <= 1.05).

    python benchmarks/harness_overhead.py [--rounds 8] [--block 5] [--method lora]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from contextlib import redirect_stdout

import torch


def build(method_name: str, prepared_features, collate, seed: int = 0):
    from peftbench.methods import MethodContext, get_method
    from peftbench.models import load_for_task

    torch.manual_seed(seed)
    loaded = load_for_task("minilm", "classification", num_labels=2)
    method = get_method(method_name)
    model = method.apply(loaded.model, method.hyperparameters(), MethodContext("encoder", "bert", "classification"))
    return model, method


def plain_steps(model, batches, optimizer, scheduler, steps: int) -> float:
    """The loop a person writes by hand: forward, backward, clip, optimizer and LR-schedule step, zero_grad."""
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        loss = model(**next(batches)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / steps


def harness_steps(model, batches, optimizer, scheduler, steps: int, method) -> float:
    from peftbench import training
    from peftbench.runs.worker import emit

    sink = io.StringIO()

    def on_step(step: int, loss: float) -> None:  # the worker's per-step progress event, as in a real run
        emit("step", step=step + 1, total=steps, loss=round(loss, 4))

    with redirect_stdout(sink):
        result = training.train(model, batches, optimizer, scheduler, steps, 1.0, "cpu", method.step_hook, on_step)
    return result.seconds / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--block", type=int, default=5)
    parser.add_argument("--method", default="lora")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from peftbench import training
    from peftbench.data import load_task_data
    from peftbench.models import load_tokenizer
    from peftbench.models.catalogue import resolve_model
    from peftbench.suites import load_suite
    from peftbench.tasks import TASK_KINDS

    task = load_suite("smoke").task("rt_sentiment")
    data = load_task_data(task)
    tokenizer = load_tokenizer(resolve_model("minilm")[0], "encoder")
    prepared = TASK_KINDS["classification"].prepare(task, tokenizer, data.train, data.eval)

    timings: dict[str, list[float]] = {"peftbench": [], "plain": []}
    total_steps = args.rounds * args.block * 2
    runners = {}
    for name in timings:
        model, method = build(args.method, prepared.train_features, prepared.collate)
        optimizer, scheduler = training.make_optimizer(model, method.defaults["learning_rate"], 0.0, total_steps, 0.1)
        batches = training.shuffled_batches(prepared.train_features, 8, prepared.collate, seed=0)
        runners[name] = (model, method, optimizer, scheduler, batches)
    for round_index in range(args.rounds + 1):  # round 0 warms both up and is discarded
        order = ["peftbench", "plain"] if round_index % 2 else ["plain", "peftbench"]
        for name in order:
            model, method, optimizer, scheduler, batches = runners[name]
            if name == "plain":
                seconds = plain_steps(model, batches, optimizer, scheduler, args.block)
            else:
                seconds = harness_steps(model, batches, optimizer, scheduler, args.block, method)
            if round_index:
                timings[name].append(seconds)
    medians = {k: statistics.median(v) for k, v in timings.items()}
    ratio = medians["peftbench"] / medians["plain"]
    print(json.dumps({"method": args.method, "model": "minilm", "batch": "8 x <=64 tokens", "rounds": args.rounds,
                      "block_steps": args.block, "median_step_seconds": {k: round(v, 4) for k, v in medians.items()},
                      "ratio_peftbench_over_plain": round(ratio, 3)}, indent=1))


if __name__ == "__main__":
    main()
