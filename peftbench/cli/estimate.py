"""`peftbench estimate` (memory and step time from the config alone) and `peftbench hardware`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from peftbench.errors import UserError
from peftbench.validation import hardware_names, overridden_methods, parse_method_overrides
from peftbench.vocabulary import TASK_KIND_NAMES

GiB = 2**30


def register(subparsers) -> None:
    p = subparsers.add_parser("estimate", help="predict peak memory and step time of fine-tuning a model",
                              description="Predict one training step's peak memory, FLOPs and step time per "
                                          "hardware profile, without weights or a GPU.")
    p.add_argument("--model", required=True, help="preset, packaged model, local dir / config.json, or hub id")
    p.add_argument("--method", required=True, help="method name, or 'all' for every method")
    p.add_argument("overrides", nargs="*", metavar="methods.NAME.KEY=VALUE", help="method hyper-parameters")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--dtype", default="bf16", choices=("bf16", "fp16", "fp32"),
                   help="dtype the model is loaded and trained in")
    p.add_argument("--mixed-precision", choices=("bf16", "fp16"), default=None,
                   help="autocast with fp32 master weights")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--optimizer", default="adamw", choices=("adamw", "adamw8bit", "sgd"))
    p.add_argument("--task-kind", default="generation", choices=TASK_KIND_NAMES)
    p.add_argument("--num-labels", type=int, default=2)
    hw = p.add_mutually_exclusive_group()
    hw.add_argument("--gpu", action="append", help="memory class, e.g. 16GB (picks the conservative card)")
    hw.add_argument("--hardware", action="append", help="profile name(s), comma-separated: t4,a100-80gb,cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    multi = p.add_argument_group("several GPUs (data parallel; --batch-size is then the per-GPU micro-batch)")
    multi.add_argument("--gpus", type=int, default=None, help="number of GPUs (default 1)")
    multi.add_argument("--strategy", default=None, help="ddp | fsdp | zero2 | zero3 (default ddp with --gpus > 1)")
    multi.add_argument("--offload", default=None, help="none | optimizer | params (zero2/zero3; fsdp: params)")

    from peftbench.cli import estimate_inference  # serving cost: --inference [--context L --batch B]

    estimate_inference.add_arguments(p)
    p.set_defaults(func=run_estimate)

    h = subparsers.add_parser("hardware", help="list the hardware profiles the estimator knows")
    h.add_argument("--json", action="store_true")
    h.set_defaults(func=run_hardware)


def _plan(args):
    """The multi-GPU plan, or None for the plain single-GPU answer (no --gpus > 1, --strategy or --offload)."""
    if (args.gpus is None or args.gpus == 1) and args.strategy is None and args.offload is None:
        return None
    from peftbench.estimate.distributed import check_plan

    return check_plan(args.gpus, args.strategy, args.offload)


def _check_names(args: argparse.Namespace) -> None:
    """The model, method and hardware names, checked against torch-free lists before anything imports torch
    or transformers (seconds), so a typo is refused at once with the closest valid names. A preset's hub id
    becomes the preset's name: `--model meta-llama/Llama-3.1-8B` is answered as `--model llama-3.1-8b`."""
    from peftbench.hardware import profile_name
    from peftbench.models.configs import canonical_model
    from peftbench.validation import check_method

    args.model = canonical_model(args.model)
    if args.method != "all":
        check_method(args.method)
    for name in hardware_names(args.gpu, args.hardware) or []:
        profile_name(name)


def run_estimate(args: argparse.Namespace) -> int:
    _check_names(args)
    if getattr(args, "inference", False):  # serving cost, cli/estimate_inference.py
        from peftbench.cli.estimate_inference import run

        return run(args)
    overrides = parse_method_overrides(args.overrides)
    args.plan = _plan(args)
    methods = overridden_methods(args.method, overrides)
    results = []
    for name in methods:
        results.append(_one(name, args, overrides.get(name)))
    if args.json:
        print(json.dumps(results[0] if args.method != "all" else results, indent=1))
    else:
        _print_table(results)
    return 0


def _one(method: str, args, overrides: dict | None) -> dict[str, Any]:
    from peftbench.errors import MethodNotApplicable
    from peftbench.estimate import estimate

    kwargs = dict(overrides=overrides, task_kind=args.task_kind, batch_size=args.batch_size, seq_len=args.seq_len,
                  dtype=args.dtype, mixed_precision=args.mixed_precision, optimizer=args.optimizer,
                  gradient_checkpointing=args.gradient_checkpointing,
                  hardware=hardware_names(args.gpu, args.hardware), num_labels=args.num_labels)
    try:
        if getattr(args, "plan", None) is not None:
            from peftbench.estimate.multi_gpu import estimate_distributed

            return estimate_distributed(args.model, method, args.plan, **kwargs)
        return estimate(args.model, method, **kwargs).to_dict()
    except MethodNotApplicable as exc:
        if args.method != "all":
            raise UserError(f"{method} cannot be applied: {exc}") from None
        return {"model": args.model, "method": method, "skipped": str(exc)}


def _print_table(results: list[dict[str, Any]]) -> None:
    import pandas as pd

    rows = []
    for r in results:
        if "skipped" in r:
            rows.append({"method": r["method"], "note": "not applicable: " + r["skipped"]})
            continue
        b = r["breakdown"]
        row = {"method": r["method"], "trainable": f"{r['trainable_params']:,}", "peak GiB": r["peak_bytes"] / GiB,
               "peak at": r.get("peak_phase", "")}
        for key, column in (("weights", "weights"), ("gradients", "grads"), ("optimizer_states", "optim"),
                            ("activations", "activ"), ("temporaries", "temps"), ("gathered", "gathered"),
                            ("buckets", "buckets"), ("overhead", "other")):
            if key in b:
                row[column] = b[key] / GiB
        row["TFLOP"] = r["flops_per_step"] / 1e12
        for name, p in r["profiles"].items():
            row[name] = f"{'ok' if p['fits'] else 'OOM'} {p['step_seconds']:.3g}s b≤{p['max_batch_size']}"
        rows.append(row)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)
    print(pd.DataFrame(rows).fillna("").to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    first = next((r for r in results if "skipped" not in r), None)
    if first:
        s = first["settings"]
        print(f"\n{first['model']}: batch {s['batch_size']} × {s['seq_len']} tokens, {s['dtype']}"
              f"{', autocast ' + s['mixed_precision'] if s['mixed_precision'] else ''}, {s['optimizer']}"
              f"{', gradient checkpointing' if s['gradient_checkpointing'] else ''}. Peak = CUDA reserved memory "
              "(add the CUDA context, 0.4-1.2 GiB by card, for nvidia-smi); cell = fits, step time, largest batch.")
        if "gpus" in first:
            print(f"Per GPU: {first['gpus']} GPUs, {first['strategy']}"
                  f"{', offload ' + first['offload'] if first['offload'] != 'none' else ''}; global batch "
                  f"{s['global_batch_size']}; communication {first['communication_bytes_per_step'] / 1e9:.2f} GB "
                  "per GPU per step; 1-GPU peak " f"{first['single_gpu_peak_bytes'] / GiB:.2f} GiB.")
        for note in {n for r in results for n in r.get("notes", [])}:
            print("note:", note)
        sources = sorted({r["settings"].get("answered_from", "") for r in results if "skipped" not in r})
        print("answered from:", "; ".join(s for s in sources if s))


def run_hardware(args: argparse.Namespace) -> int:
    import pandas as pd

    from peftbench.hardware import catalogue

    profiles = catalogue()
    if args.json:
        print(json.dumps({n: p.__dict__ for n, p in profiles.items()}, indent=1, default=str))
        return 0
    rows = [{"name": p.name, "title": p.title, "memory GiB": p.memory_bytes / GiB, "bandwidth GB/s": p.bandwidth_gbs,
             "bf16 TFLOPS": p.tflops.get("bf16") or "-", "fp16 TFLOPS": p.tflops.get("fp16") or "-",
             "fp32 TFLOPS": p.tflops["fp32"], "bf16": "yes" if p.bf16_supported else "no (fp16 AMP)"}
            for p in profiles.values()]
    pd.set_option("display.width", 250)
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    print("\nSources: peftbench/hardware/profiles.json (per-card vendor documents); cpu: measured on this machine.")
    return 0
