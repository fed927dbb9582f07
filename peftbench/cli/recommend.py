"""`peftbench recommend --task KIND|SUITE/TASK [--gpu 16GB | --hardware NAME] [--model NAME] ...`.

Imports stay inside `main`: a cached call must answer in under 3 s, and torch, transformers,
scikit-learn or pandas would each cost 1.5-5 s to import on the benchmark CPU.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from peftbench.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("recommend", help="which PEFT method (and model) for a task and a GPU")
    p.add_argument("--task", help="a kind (classification, summarization, translation, generation, "
                                  "multiple-choice) or a benchmarked SUITE/TASK")
    p.add_argument("--gpu", help="GPU memory, e.g. 16GB (the most conservative card of that size)")
    p.add_argument("--hardware", help="a hardware profile name (t4, a100-80gb, cpu...); default: this CPU")
    p.add_argument("--model", help="base model (preset, packaged model, local path); default: choose one")
    p.add_argument("--data", type=Path, help="your training data (csv/jsonl/parquet) to describe the task")
    p.add_argument("--train-examples", type=int, help="number of training examples")
    p.add_argument("--seq-len", type=int, help="tokens per example (input + target)")
    p.add_argument("--max-hours", type=float, help="training time budget for all epochs")
    p.add_argument("--max-adapter-mb", type=float, help="largest acceptable saved adapter")
    p.add_argument("--top", type=int, default=5, help="how many methods to rank (default 5)")
    p.add_argument("--batch-size", type=int, default=8, help="effective batch size (default 8)")
    p.add_argument("--epochs", type=float, default=3.0, help="epochs, for the time budget (default 3)")
    p.add_argument("--results", type=Path,
                   help="learn from the runs under this results root instead of the reference results shipped with "
                        "peftbench (the published corpus is used either way)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    p.add_argument("--evaluate", action="store_true", help="leave-one-task-out track record vs baselines")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from peftbench.paths import check_input_dir, exists

    check_input_dir(args.results, "--results")
    if args.evaluate:
        from peftbench.recommend.evaluate import evaluate, format_table

        report = evaluate(results=args.results)
        print(json.dumps(report, indent=1) if args.json else format_table(report))
        return 0
    if not args.task:
        raise UserError("--task is required (a kind such as summarization, or SUITE/TASK)")
    if args.data is not None and not exists(args.data):
        raise UserError(f"--data {args.data}: no such file")
    from peftbench.recommend.engine import recommend

    rec = recommend(args.task, gpu=args.gpu, hardware=args.hardware, model=args.model, data=args.data,
                    train_examples=args.train_examples, seq_len=args.seq_len, max_hours=args.max_hours,
                    max_adapter_mb=args.max_adapter_mb, top=args.top, batch_size=args.batch_size,
                    epochs=args.epochs, results=args.results)
    print(json.dumps(rec.to_dict(), indent=1, default=str) if args.json else render(rec.to_dict()))
    return 0


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds:.2f}s" if seconds < 60 else f"{seconds / 60:.0f}m" if seconds < 3600 else f"{seconds / 3600:.1f}h"


def _fmt_size(n: float) -> str:
    return f"{n / 2**30:.1f}G" if n >= 2**30 else f"{n / 2**20:.1f}M"


def _hp(c: dict[str, Any]) -> str:
    keep = ("r", "learning_rate", "target_modules", "num_virtual_tokens", "reduction_factor")
    parts = [f"{k}={v}" for k, v in c["hyperparameters"].items() if k in keep and v is not None]
    if c["gradient_checkpointing"]:
        parts.append("grad-ckpt")
    if c["gradient_accumulation"] > 1:
        parts.append(f"batch {c['batch_size']}x{c['gradient_accumulation']}")
    return " ".join(parts)


def run_overrides(c: dict[str, Any]) -> str:
    """The `peftbench run` overrides that reproduce a recommended setting (method, its hyper-parameters, the
    learning rate, micro-batch, accumulation and checkpointing). The rate goes in `train.learning_rate`: a
    method-level rate would be scaled by the suite's `lr_multiplier`."""
    import json

    parts = [f"methods=[{c['method']}]"]
    for key, value in c["hyperparameters"].items():
        if value is None or key == "total_step":
            continue
        text = json.dumps(value).replace(" ", "").replace('"', "") if isinstance(value, list) else value
        name = "train.learning_rate" if key == "learning_rate" else f"methods.{c['method']}.{key}"
        parts.append(f"{name}={text}")
    parts.append(f"train.batch_size={c['batch_size']}")
    if c["gradient_accumulation"] > 1:
        parts.append(f"train.gradient_accumulation_steps={c['gradient_accumulation']}")
    if c["gradient_checkpointing"]:
        parts.append("train.gradient_checkpointing=true")
    return " ".join(parts)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows)


def render(rec: dict[str, Any]) -> str:
    task = rec["task"]
    out = [f"Task: {task['query']} ({task['kind']}, ~{task['train_examples'] or '?'} examples, "
           f"{task['seq_len']} tokens)   GPU: {rec['gpu']}   Model: {rec['model']}", ""]
    rows = [["#", "method", "hyper-parameters", "quality vs full FT (80%)", "peak", "fits", "step", "epoch",
             "adapter"]]
    for i, c in enumerate(rec["ranking"], 1):
        q, lo_hi = c["predicted_relative_quality"], c["quality_interval"]
        rows.append([str(i), c["method"], _hp(c), f"{q:.0%} [{lo_hi[0]:.0%}, {lo_hi[1]:.0%}]",
                     _fmt_size(c["peak_bytes"]), "yes", _fmt_time(c["step_seconds"]),
                     _fmt_time(c["epoch_seconds"]), _fmt_size(c["adapter_bytes"])])
    out.append(_table(rows) if len(rows) > 1 else "Nothing fits.")
    if rec["ranking"]:
        top = rec["ranking"][0]
        out += ["", f"Why {top['method']}:"] + [f"  - {r}" for r in top["reasons"]]
        out += [f"Run it: peftbench run suite=YOURS {run_overrides(top)}"]
        out += ["Evidence:"] + [f"  - {e}" for e in top["evidence"] or ["(none beyond the defaults)"]]
        flagged = [c for c in rec["ranking"][1:] if c["warnings"]]
        out += [f"Note on {c['method']}: {w}" for c in flagged for w in c["warnings"] if "unstable" in w]
    if rec["not_fitting"]:
        out += ["", "Not recommended here:"]
        for c in rec["not_fitting"]:
            why = c["excluded_because"] or f"peak {_fmt_size(c['peak_bytes'])} does not fit"
            fix = f"; would fit with: {' or '.join(c['would_fit_with'])}" if c["would_fit_with"] else ""
            out.append(f"  - {c['method']}: {why}{fix}")
    base = rec["evidence_base"]
    out += ["", f"Based on {base['runs']} benchmark runs over {base['tasks']} tasks and "
                f"{base['published_points']} published figures."] + [f"Note: {n}" for n in rec["notes"]]
    return "\n".join(out)
