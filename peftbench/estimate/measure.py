"""Measure a real CPU training step, for validating the estimator (tests and benchmarks).

Run in a fresh process (`python -m peftbench.estimate.measure JSON`) so that the resident-set baseline
is clean: the peak is VmHWM after resetting it just before the model is loaded, minus VmRSS at that
moment, the same quantity `predict_run_peak` predicts on CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def _reset_hwm() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux ≥ 4.0)


def pin_malloc_threshold(threshold: int = 128 * 1024) -> None:
    """Fix glibc's mmap threshold so that freed tensors are returned to the OS.

    By default glibc raises the threshold (up to 32 MiB) each time a large block is freed; later blocks of
    that size then come from the heap and stay resident after `free`, so the same step can show a peak
    RSS 50% higher depending on what ran before (measured here: MiniLM LoRA 490 MB vs 336 MB). With a
    fixed threshold, RSS follows live tensors and the prediction holds. Harness workers should call this
    first thing; the cost is an mmap/munmap per large tensor.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to pin
        return
    libc.mallopt(-3, threshold)  # M_MMAP_THRESHOLD


def run_measurement(spec: dict[str, Any]) -> dict[str, Any]:
    """Load the model, wrap it, run `steps` training steps; return peak RSS delta and step times.

    Same protocol as the harness worker (`peftbench.runs.worker.set_up` / `_train_and_evaluate`):
    torch, transformers, peft and datasets imported and the tokenizer loaded *before* the baseline; then
    `gc.collect()`, baseline VmRSS, VmHWM reset; then weights load, the method wraps, and the steps run
    with an attention mask (all ones: an unpadded batch), labels, dropout on, grad clipping at 1.0, the
    harness's AdamW and LR scheduler, `step_hook(model, step)` and `zero_grad(set_to_none=True)`.
    With `spec["diagnose"]`, also return VmRSS after load, wrap and each step (bytes over the baseline).
    """
    pin_malloc_threshold()
    import gc

    import torch

    torch.set_num_threads(int(spec.get("threads", 1)))
    import datasets  # noqa: F401  (imported before the baseline, as in a harness worker)
    import peft  # noqa: F401
    import transformers  # noqa: F401

    from peftbench.methods import count_parameters

    config, tokenizer, batch = _batch(spec)
    gc.collect()
    base = _status_kib("VmRSS")
    _reset_hwm()
    trace: dict[str, int] = {}
    model, method = _load_and_wrap(spec, config, tokenizer, trace, base)
    times = _train_steps(spec, model, method, batch, trace, base)
    trainable, total = count_parameters(model)
    result = {"peak_rss_delta": (_status_kib("VmHWM") - base) * 1024, "step_seconds": times,
              "trainable_params": trainable, "total_params": total}
    if spec.get("diagnose"):
        result["rss_delta"] = {k: v * 1024 for k, v in trace.items()}
        result["rss_file"] = _status_kib("RssFile") * 1024
    return result


def _batch(spec: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    """Config and tokenizer (loaded before the baseline, as the worker does) and one random unpadded batch."""
    import torch

    from peftbench import training
    from peftbench.models import architecture_family
    from peftbench.models.catalogue import resolve_model
    from peftbench.models.loading import load_config, load_tokenizer

    b, length = spec["batch_size"], spec["seq_len"]
    config, _, _ = load_config(spec["model"])
    tokenizer = load_tokenizer(resolve_model(spec["model"])[0], architecture_family(config))
    training.seed_everything(int(spec.get("seed", 0)))
    ids = torch.randint(5, min(1000, config.vocab_size), (b, length))
    labels = torch.zeros((b,), dtype=torch.long) if spec["task_kind"] == "classification" else ids.clone()
    return config, tokenizer, {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def _load_and_wrap(spec: dict[str, Any], config: Any, tokenizer: Any, trace: dict[str, int],
                   base: int) -> tuple[Any, Any]:
    from peftbench.methods import MethodContext, get_method
    from peftbench.models import architecture_family, load_for_task

    loaded = load_for_task(spec["model"], spec["task_kind"], num_labels=spec.get("num_labels", 2),
                           dtype=spec.get("dtype", "fp32"), tokenizer=tokenizer)
    trace["loaded"] = _status_kib("VmRSS") - base
    method = get_method(spec["method"])
    hp = method.hyperparameters(spec.get("overrides"))
    if "total_step" in hp and hp["total_step"] is None:
        hp["total_step"] = 1000
    model = method.apply(loaded.model, hp, MethodContext(architecture_family(config), config.model_type,
                                                         spec["task_kind"], "cpu"))
    trace["wrapped"] = _status_kib("VmRSS") - base
    return model, method


def _train_steps(spec: dict[str, Any], model: Any, method: Any, batch: dict[str, Any], trace: dict[str, int],
                 base: int) -> list[float]:
    """`steps` harness training steps (`training.train_step`), each over `accumulation_steps` copies of the
    batch; their times, and VmRSS after each in `trace`."""
    from peftbench import training

    steps = int(spec.get("steps", 3))
    if spec.get("gradient_checkpointing"):
        training.enable_gradient_checkpointing(model, method.name)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = training.make_optimizer(model, float(spec.get("learning_rate", 1e-4)),
                                                   float(spec.get("weight_decay", 0.0)), max(steps, 1), 0.1)
    micro = [batch] * int(spec.get("accumulation_steps", 1))
    times = []
    for step in range(steps):
        start = time.perf_counter()
        losses = training.train_step(model, micro, optimizer, scheduler, params, step, 1.0, method.step_hook)
        [float(loss) for loss in losses]  # the harness reads each loss: the step's work is done here
        times.append(time.perf_counter() - start)
        trace[f"step{step}"] = _status_kib("VmRSS") - base
    return times


def measure(spec: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    """`run_measurement` in a fresh interpreter (clean RSS baseline, one thread)."""
    proc = subprocess.run([sys.executable, "-m", "peftbench.estimate.measure", json.dumps(spec)],
                          capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"measurement failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(json.dumps(run_measurement(json.loads(sys.argv[1]))))
