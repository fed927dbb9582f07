"""Estimator accuracy on a real GPU: predicted vs measured peak memory and step time, section (c).

Randomly initialised models built from the presets (no weights needed), wrapped by the harness's method
registry, trained for a few steps with the harness's optimizer (AdamW, torch's CUDA default: foreach),
gradient clipping at 1.0 and `zero_grad(set_to_none=True)`, on unpadded random-token batches. Three steps:

    python benchmarks/gpu_validation.py predict            # here, on CPU: benchmarks/gpu_predictions.json
    python benchmarks/gpu_validation.py measure --out DIR  # on the GPU: DIR/gpu_measurements.json
    python benchmarks/gpu_validation.py report             # here: benchmarks/estimator_accuracy_gpu.md
    python benchmarks/gpu_validation.py multi --out DIR    # on the GPU: runs over several processes (NCCL)

Measured per case: torch's `max_memory_allocated` / `max_memory_reserved` over all steps, NVML's device-wide
peak (`peftbench.telemetry.CudaMemory`), per-phase allocated peaks in the last step, and the median time
of the steps after the first two (synchronised). QLoRA and 8-bit AdamW need bitsandbytes, which the GPU
machine lacks; they are not measured.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PREDICTIONS = HERE / "gpu_predictions.json"
MEASUREMENTS = HERE / "gpu_measurements.json"
REPORT = HERE / "estimator_accuracy_gpu.md"
PROFILES = ("h100-80gb", "h200")
STEPS = 6
TIMED_FROM = 2  # the first steps allocate optimizer states and warm kernels/cuBLAS up


@dataclass(frozen=True)
class Case:
    model: str
    method: str
    batch_size: int
    seq_len: int
    task_kind: str = "generation"
    dtype: str = "bf16"
    mixed_precision: str | None = None
    gradient_checkpointing: bool = False
    overrides: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def key(self) -> str:
        setting = self.mixed_precision and f"amp-{self.mixed_precision}" or self.dtype
        ckpt = "+ckpt" if self.gradient_checkpointing else ""
        return f"{self.model}/{self.method}/{self.task_kind}/{self.batch_size}x{self.seq_len}/{setting}{ckpt}"


_ONE_ARCH_METHODS = ("full", "adapter", "lora", "dora", "rslora", "adalora", "loha", "lokr", "vera", "oft",
                     "ia3", "ln_tuning", "prompt_tuning", "prefix_tuning", "p_tuning")
# Small cases first: if the time guard stops the run, the most cases are done. BOFT last of the 1B set
# (peft compiles a CUDA extension for it at first use; we run its PyTorch fallback, the path the
# estimator traces).
CASES: list[Case] = [
    *(Case("llama-3.2-1b", m, 4, 512) for m in _ONE_ARCH_METHODS),
    Case("llama-3.2-1b", "boft", 4, 512),
    Case("qwen2.5-0.5b", "bitfit", 8, 1024),
    Case("qwen2.5-0.5b", "full", 8, 1024),
    Case("qwen2.5-0.5b", "lora", 8, 1024),
    Case("gpt2", "full", 8, 1024),
    Case("t5-base", "lora", 8, 512),
    Case("t5-base", "full", 8, 512),
    Case("bert-base", "full", 32, 128, task_kind="classification"),
    Case("roberta-base", "lora", 32, 256, task_kind="classification"),
    Case("llama-3.2-1b", "full", 4, 512, dtype="fp32", mixed_precision="bf16"),
    Case("llama-3.2-1b", "lora", 8, 2048, gradient_checkpointing=True),
    Case("gemma-2-2b", "lora", 2, 1024),
    Case("phi-3-mini", "lora", 2, 1024),
    Case("llama-3.2-3b", "lora", 4, 1024),
    Case("qwen2.5-7b", "lora", 2, 1024),
    Case("mistral-7b", "lora", 2, 2048),
    Case("llama-3.1-8b", "lora", 4, 1024),
    Case("llama-3.1-8b", "lora", 8, 2048, gradient_checkpointing=True),
    Case("llama-3.1-8b", "full", 1, 512),
    Case("t5-large", "lora", 4, 512),
    Case("bart-base", "full", 8, 512),
    Case("deberta-v3-base", "lora", 16, 256, task_kind="classification"),
    Case("qwen2.5-1.5b", "ia3", 4, 1024),
    Case("gpt2", "full", 8, 512, dtype="fp32"),
    Case("llama-3.2-1b", "lora", 4, 512, dtype="fp32", mixed_precision="fp16"),
    # The fit boundary on an 80 GB card: `peftbench estimate … --hardware h100-80gb` says the first of
    # each pair fits and the second does not (device bytes incl. the CUDA context vs 79.65 GiB).
    # Those predicted to fit run first, so that no leftover of an out-of-memory case can sink them.
    Case("llama-3.2-1b", "lora", 22, 1024),  # predicted 75.3 GiB on the device
    Case("qwen2.5-0.5b", "full", 21, 1024),  # predicted 76.1 GiB
    Case("llama-3.2-3b", "lora", 7, 2048),  # predicted 78.5 GiB
    Case("llama-3.2-1b", "lora", 24, 1024),  # predicted 81.8 GiB
    Case("qwen2.5-0.5b", "full", 23, 1024),  # predicted 82.9 GiB
    Case("llama-3.2-3b", "lora", 8, 2048),  # predicted 88.6 GiB
]


# ---- predict (CPU) -----------------------------------------------------------------------------------
def predict() -> None:
    from peftbench.errors import MethodNotApplicable
    from peftbench.estimate import estimate
    from peftbench.estimate.core import traced
    from peftbench.estimate.trace import Shape
    from peftbench.hardware import allocator
    from peftbench.methods import get_method
    from peftbench.models.configs import load_any_config

    workspace = allocator()["cublas_workspace_bytes"]
    out: dict[str, Any] = {}
    for case in CASES:
        try:
            est = estimate(case.model, case.method, overrides=case.overrides, task_kind=case.task_kind,
                           batch_size=case.batch_size, seq_len=case.seq_len, dtype=case.dtype,
                           mixed_precision=case.mixed_precision, gradient_checkpointing=case.gradient_checkpointing,
                           hardware=list(PROFILES))
        except MethodNotApplicable as exc:
            out[case.key] = {"not_applicable": str(exc)}
            continue
        method = get_method(case.method)
        shape = Shape(case.batch_size, case.seq_len, case.dtype, case.mixed_precision, "adamw",
                      case.gradient_checkpointing, device="cuda")
        trace = traced(load_any_config(case.model), method, method.hyperparameters(case.overrides),
                       case.task_kind, shape)
        out[case.key] = {
            # torch counts cuBLAS's workspaces as allocated; fragmentation only shows in reserved
            "allocated_peak_bytes": max(n["peak"] for n in trace["phases"].values()) + workspace,
            "reserved_peak_bytes": est.peak_bytes,
            "device_bytes": est.profiles["h100-80gb"]["device_bytes"],
            "phase_peaks": {p: n["peak"] for p, n in trace["phases"].items()},
            "breakdown": est.breakdown, "peak_phase": est.peak_phase,
            "step_seconds": {p: est.profiles[p]["step_seconds"] for p in PROFILES},
            "fits_h100": est.profiles["h100-80gb"]["fits"],
            "trainable_params": est.trainable_params, "total_params": est.total_params,
            "cost": {"flops": trace["flops"], "other_bytes": trace["other_bytes"], "kernels": trace["kernels"]},
        }
        print(f"{case.key}: {out[case.key]['allocated_peak_bytes'] / 2**30:.2f} GiB allocated", flush=True)
    PREDICTIONS.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


# ---- measure (GPU) -----------------------------------------------------------------------------------
def _free_cuda() -> None:
    import torch

    gc.collect()
    torch.cuda.empty_cache()
    torch._C._cuda_clearCublasWorkspaces()  # each case allocates its own, as a fresh process would
    torch.cuda.reset_peak_memory_stats()


def _batch(case: Case, config) -> dict[str, Any]:
    import torch

    from peftbench.estimate.trace import Shape, make_inputs

    inputs = make_inputs(None, config, case.task_kind, Shape(case.batch_size, case.seq_len))
    ids = torch.randint(5, min(1000, config.vocab_size), (case.batch_size, case.seq_len))
    inputs["input_ids"] = ids
    if case.task_kind != "classification":
        inputs["labels"] = ids.clone()
    return {k: v.cuda() for k, v in inputs.items()}


def measure_case(case: Case) -> dict[str, Any]:
    import contextlib

    import torch

    from peftbench import training
    from peftbench.estimate.build import build_wrapped
    from peftbench.methods import count_parameters, get_method
    from peftbench.models.configs import load_any_config
    from peftbench.telemetry import CudaMemory

    method = get_method(case.method)
    config = load_any_config(case.model)
    torch.manual_seed(0)
    model = build_wrapped(config, method, method.hyperparameters(case.overrides), case.task_kind,
                          "fp32" if case.mixed_precision else case.dtype, device="cuda")
    if case.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    torch.cuda.empty_cache()  # random initialisation's cached blocks are not part of training
    trainable, total = count_parameters(model)
    batch = _batch(case, config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = training.make_optimizer(model, 1e-4, 0.0, STEPS, 0.1)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16 if case.mixed_precision == "bf16" else torch.float16)
                if case.mixed_precision else contextlib.nullcontext())
    memory = CudaMemory()  # resets torch's peaks: weights are already in place, as for the prediction
    times, phases, overall = _train(model, method, batch, params, optimizer, scheduler, autocast, memory)
    report = memory.report()
    return {
        "allocated_peak_bytes": max(overall, *phases.values()), "phase_peaks": phases,
        "reserved_peak_bytes": report["cuda_max_reserved_bytes"],
        "nvml_peak_used_bytes": report["nvml_peak_used_bytes"],
        "outside_allocator_bytes": (report["nvml_peak_used_bytes"] or 0) - int(torch.cuda.memory_reserved()),
        "step_seconds": statistics.median(times[TIMED_FROM:]), "step_seconds_all": times,
        "trainable_params": trainable, "total_params": total,
    }


def _train(model, method, batch, params, optimizer, scheduler, autocast, memory) -> tuple[list[float], dict, int]:
    """STEPS synchronised training steps (`training.train_step`, the harness's step): their times, the last
    step's allocated peak per phase, and the allocated peak of the steps before it."""
    import torch

    from peftbench import training

    times, phases, overall = [], {}, 0
    step = 0

    def phase_end(name: str) -> None:
        if step == STEPS - 1:
            phases[name] = int(torch.cuda.max_memory_allocated())
            torch.cuda.reset_peak_memory_stats()

    for step in range(STEPS):
        torch.cuda.synchronize()
        if step == STEPS - 1:
            overall = int(torch.cuda.max_memory_allocated())
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        training.train_step(model, [batch], optimizer, scheduler, params, step, 1.0, method.step_hook,
                            forward_context=lambda: autocast, on_phase_end=phase_end)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        memory.sample()
    return times, phases, overall


def measure(out_dir: Path, budget_seconds: float, only: list[str] | None = None) -> None:
    import peft.tuners.boft.layer as boft_layer
    import torch

    from peftbench.telemetry import library_versions

    boft_layer._FBD_CUDA = False  # peft's "extension unavailable" value: its PyTorch path, no compile
    predictions = json.loads(PREDICTIONS.read_text()) if PREDICTIONS.is_file() else {}
    started = time.perf_counter()
    rows: dict[str, Any] = {"_device": torch.cuda.get_device_name(), "_versions": library_versions()}
    out_path = out_dir / MEASUREMENTS.name
    for case in CASES:
        if only and case.key not in only:
            continue
        if "not_applicable" in predictions.get(case.key, {}):
            continue
        if time.perf_counter() - started > budget_seconds:
            rows[case.key] = {"error": "not run: time budget spent"}
            continue
        _free_cuda()
        t0 = time.perf_counter()
        try:
            rows[case.key] = measure_case(case)
        except Exception as exc:  # OOM or a method that breaks on CUDA: recorded, the next case runs
            rows[case.key] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
        rows[case.key]["wall_seconds"] = round(time.perf_counter() - t0, 1)
        out_path.write_text(json.dumps(rows, indent=1) + "\n")
        print(_line(case.key, rows[case.key], predictions.get(case.key)), flush=True)


def _line(key: str, measured: dict[str, Any], predicted: dict[str, Any] | None) -> str:
    if "error" in measured:
        return f"{key}: {measured['error']}"
    text = f"{key}: alloc {measured['allocated_peak_bytes'] / 2**30:.2f} GiB, step {measured['step_seconds']:.3f} s"
    if predicted and "allocated_peak_bytes" in predicted:
        err = predicted["allocated_peak_bytes"] / measured["allocated_peak_bytes"] - 1
        text += f" (pred {predicted['allocated_peak_bytes'] / 2**30:.2f} GiB, {err:+.1%})"
    return text


# ---- report (CPU) ------------------------------------------------------------------------------------
GIB = 2**30


def _pct(predicted: float, measured: float) -> float:
    return predicted / measured - 1


def report() -> None:
    predictions = json.loads(PREDICTIONS.read_text())
    measured = json.loads(MEASUREMENTS.read_text())
    lines = [f"## (c) GPU: predicted vs measured, randomly initialised presets ({measured['_device']})", "",
             f"Produced by `python benchmarks/gpu_validation.py` (predict here, measure there, report here). "
             f"GPU side: {', '.join(f'{k} {v}' for k, v in measured['_versions'].items())}; predictions "
             "made on this CPU (torch 2.13) with the same transformers and peft. Models are built from the preset"
             " configs with random weights on the GPU, wrapped by the method registry, and trained for "
             f"{STEPS} steps on unpadded random-token batches (AdamW foreach, clip 1.0).", "",
             "- **allocated**: torch `max_memory_allocated` over all steps. Predicted: the traced peak plus "
             "64 MiB of cuBLAS workspaces. Not fitted to these runs except that constant.",
             "- **reserved**: `max_memory_reserved`, which the estimator's `peak_bytes` predicts. Its two "
             "constants (3.2% of the peak + 0.46 × the fp32 logits) were fitted on these same runs: in-sample.",
             f"- **step**: median of steps {TIMED_FROM + 1}–{STEPS}, synchronised, against the H100 roofline. Its"
             " efficiency factors were also fitted on these runs; the held-out check is at the end.", "",
             "| case | pred. alloc GiB | meas. alloc GiB | error | pred. reserved | meas. reserved | error "
             "| pred. step s | meas. step s | meas./pred. |", "|---|---|---|---|---|---|---|---|---|---|"]
    alloc_err, reserved_err, step_ratio, outside, frag = [], [], [], [], []
    skipped = []
    for case in CASES:
        pred, meas = predictions.get(case.key, {}), measured.get(case.key)
        if "not_applicable" in pred or meas is None:
            continue
        if "error" in meas:
            skipped.append(f"- {case.key}: {meas['error']} (predicted {pred['allocated_peak_bytes'] / GIB:.2f} GiB"
                           f" allocated, {pred['device_bytes'] / GIB:.2f} GiB on the device)")
            continue
        a = _pct(pred["allocated_peak_bytes"], meas["allocated_peak_bytes"])
        r = _pct(pred["reserved_peak_bytes"], meas["reserved_peak_bytes"])
        ratio = meas["step_seconds"] / pred["step_seconds"]["h100-80gb"]
        alloc_err.append(a)
        reserved_err.append(r)
        step_ratio.append(ratio)
        outside.append(meas["outside_allocator_bytes"])
        frag.append(meas["reserved_peak_bytes"] / meas["allocated_peak_bytes"] - 1)
        cells = [case.key, f"{pred['allocated_peak_bytes'] / GIB:.2f}", f"{meas['allocated_peak_bytes'] / GIB:.2f}",
                 f"{a:+.1%}", f"{pred['reserved_peak_bytes'] / GIB:.2f}", f"{meas['reserved_peak_bytes'] / GIB:.2f}",
                 f"{r:+.1%}", f"{pred['step_seconds']['h100-80gb']:.3f}", f"{meas['step_seconds']:.3f}", f"{ratio:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if alloc_err:
        abs_a, abs_r = [abs(e) for e in alloc_err], [abs(e) for e in reserved_err]
        lines += ["", f"Peak memory over {len(alloc_err)} cases: allocated median |error| "
                  f"{statistics.median(abs_a):.1%}, max {max(abs_a):.1%}; reserved median |error| "
                  f"{statistics.median(abs_r):.1%}, max {max(abs_r):.1%}. Step time measured/predicted: median "
                  f"{statistics.median(step_ratio):.2f}, range {min(step_ratio):.2f}–{max(step_ratio):.2f}. "
                  f"Measured reserved/allocated − 1: median {statistics.median(frag):.1%}, max {max(frag):.1%}; "
                  f"device memory outside the allocator (NVML used − reserved): median "
                  f"{statistics.median(outside) / 2**20:.0f} MiB."]
    lines += ["", *_fit_decisions(predictions, measured)]
    if skipped:
        lines += ["", "Out of memory:", *skipped]
    lines += ["", *calibrate_step_time(predictions, measured)]
    REPORT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _fit_decisions(predictions: dict[str, Any], measured: dict[str, Any]) -> list[str]:
    """Did `fits` on the 80 GB profile (device bytes incl. the CUDA context) call every run right?"""
    from peftbench.hardware import gpu_profiles

    card = gpu_profiles()["h100-80gb"].memory_bytes
    rows, agree, total = [], 0, 0
    for case in CASES:
        pred, meas = predictions.get(case.key, {}), measured.get(case.key)
        if meas is None or "fits_h100" not in pred:
            continue
        ran = "error" not in meas
        oom = not ran and "OutOfMemoryError" in meas["error"]
        if not ran and not oom:
            continue
        agree += pred["fits_h100"] == ran
        total += 1
        if pred["device_bytes"] > 0.85 * card or not ran:
            rows.append(f"| {case.key} | {pred['device_bytes'] / GIB:.1f} | {'yes' if pred['fits_h100'] else 'no'}"
                        f" | {'ran' if ran else 'out of memory'} |")
    return [f"Fit decisions on the 80 GB profile ({card / GIB:.2f} GiB): right in {agree} of {total} runs. "
            "Those near the limit: 24 x 1024 for Llama-3.2-1B LoRA ran out of memory before the reserved-memory "
            "model was fitted, and informed it; the other five pairs' batch sizes were then chosen with the fitted "
            "model and measured:", "",
            "| case | predicted on device GiB | fits? | outcome |", "|---|---|---|---|", *rows]


def _roofline_terms(prediction: dict[str, Any]) -> list[float]:
    """Seconds at 100% of the H100's peaks: matmul FLOPs, other bytes; and the kernel count."""
    from peftbench.estimate.core import _DTYPE_NAMES
    from peftbench.hardware import gpu_profiles

    h100 = gpu_profiles()["h100-80gb"]
    cost = prediction["cost"]
    compute = sum(f / h100.peak_flops(_DTYPE_NAMES.get(dt, "fp32")) for dt, f in cost["flops"].items())
    return [compute, cost["other_bytes"] / (h100.bandwidth_gbs * 1e9), float(cost["kernels"])]


def calibrate_step_time(predictions: dict[str, Any], measured: dict[str, Any]) -> list[str]:
    """Fit the roofline's efficiency factors (matmul, bandwidth, per-kernel seconds) to the measured steps
    by non-negative least squares on relative error; fit on every other case, check on the rest, then
    fit on all (the values to put in hardware/profiles.json)."""
    import numpy as np
    from scipy.optimize import nnls

    keys = [c.key for c in CASES if c.key in measured and "error" not in measured[c.key]
            and "cost" in predictions.get(c.key, {})]
    terms = np.array([_roofline_terms(predictions[k]) for k in keys])
    seconds = np.array([measured[k]["step_seconds"] for k in keys])

    def fit(idx: np.ndarray) -> np.ndarray:
        return nnls(terms[idx] / seconds[idx, None], np.ones(len(idx)))[0]  # relative residuals

    def spread(coef: np.ndarray, idx: np.ndarray) -> str:
        ratio = seconds[idx] / (terms[idx] @ coef)
        return f"measured/predicted median {np.median(ratio):.2f}, range {ratio.min():.2f}–{ratio.max():.2f}"

    train, test = np.arange(0, len(keys), 2), np.arange(1, len(keys), 2)
    held = fit(train)
    every = fit(np.arange(len(keys)))
    eff = [1 / c if c > 0 else float("inf") for c in every[:2]]
    return [f"Step-time calibration ({len(keys)} cases): fitted on every other case, the held-out half gives "
            f"{spread(held, test)}. Fitted on all: matmul efficiency {eff[0]:.2f}, bandwidth efficiency "
            f"{eff[1]:.2f}, {every[2] * 1e6:.1f} µs per kernel ({spread(every, np.arange(len(keys)))})."]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("predict")
    m = sub.add_parser("measure")
    m.add_argument("--out", type=Path, default=HERE)
    m.add_argument("--budget-seconds", type=float, default=300.0)
    m.add_argument("--only", nargs="*", help="case keys to measure (default: all)")
    sub.add_parser("report")
    sub.add_parser("multi", help="runs over several processes on CUDA (gpu_multi_process.py)").add_argument(
        "--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    if args.command == "predict":
        predict()
    elif args.command == "measure":
        args.out.mkdir(parents=True, exist_ok=True)
        measure(args.out, args.budget_seconds, args.only)
    elif args.command == "multi":
        from gpu_multi_process import check

        check(args.out)
    else:
        report()


if __name__ == "__main__":
    sys.exit(main())
