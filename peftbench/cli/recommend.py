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

EXPORT_TOOLS = ("peft", "trl", "llamafactory", "axolotl")  # peftbench.export.TOOLS, kept here: no import at startup


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
    p.add_argument("--top", type=int, default=20, help="how many methods to rank (default: all)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="effective batch size, kept: micro-batch x gradient accumulation (default 16)")
    p.add_argument("--epochs", type=float, default=3.0, help="epochs, for time and training length (default 3)")
    p.add_argument("--mixed-precision", choices=("bf16", "fp16"), default=None,
                   help="assume autocast with fp32 master weights and AdamW states (default: pure bf16)")
    p.add_argument("--results", type=Path,
                   help="learn from the runs under this results root instead of the reference results shipped with "
                        "peftbench (the published corpus is used either way)")
    p.add_argument("--gpus", type=int, default=1,
                   help="GPUs of the stated kind: methods that do not fit one are trained data-parallel "
                        "(the cheapest of ddp, zero2, fsdp, zero3, offload that fits), and the answer says which")
    p.add_argument("--deploy", choices=("server", "edge"), default=None,
                   help="weigh serving cost: inference overhead (merged or not), adapter storage")
    p.add_argument("--max-latency-overhead", type=float, default=None,
                   help="with --deploy: largest acceptable inference latency ratio to the base model (e.g. 1.2)")
    p.add_argument("--adapters-per-base", type=int, default=1,
                   help="with --deploy server: task adapters served on one base model (N > 1: unmerged)")
    p.add_argument("--tuning-runs", type=int, default=1,
                   help="training runs you can afford per method to find its learning rate (default 1: the "
                        "suggested setting, once); a method that needs a sweep to be good is penalised below 3")
    p.add_argument("--value-margin", type=float, default=2.0,
                   help="best value: the cheapest method within this many %% of full FT's score of the best "
                        "(default 2)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    p.add_argument("--export", choices=EXPORT_TOOLS, default=None,
                   help="also write the pick as this tool's config: peft (adapter_config.json + training_args.json), "
                        "trl (trl sft --config), llamafactory (llamafactory-cli train), axolotl (axolotl train)")
    p.add_argument("--export-dir", type=Path, default=None,
                   help="with --export: the folder to write into (default ./peftbench-export-TOOL)")
    p.add_argument("--evaluate", action="store_true",
                   help="track record: leave-one-source-out (corpus) and leave-one-task-out (own runs) vs baselines")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from peftbench.paths import check_input_dir, exists

    check_input_dir(args.results, "--results")
    if args.evaluate:
        from peftbench.recommend.evaluate import evaluate
        from peftbench.recommend.track_record_table import format_table

        report = evaluate(results=args.results)
        print(json.dumps(report, indent=1) if args.json else format_table(report))
        return 0
    if not args.task:
        raise UserError("--task is required (a kind such as summarization, or SUITE/TASK)")
    if args.data is not None and not exists(args.data):
        raise UserError(f"--data {args.data}: no such file")
    check_gpu_and_serving_values(args)
    if args.deploy is None and (args.max_latency_overhead is not None or args.adapters_per_base != 1):
        raise UserError("--max-latency-overhead and --adapters-per-base apply only with --deploy server|edge")
    if args.export_dir is not None:
        if args.export is None:
            raise UserError("--export-dir applies only with --export peft|trl|llamafactory|axolotl")
        from peftbench.paths import check_output_dir

        check_output_dir(args.export_dir, "--export-dir")  # before the answer is computed, not after
    from peftbench.recommend.engine import recommend

    rec = recommend(args.task, gpu=args.gpu, hardware=args.hardware, model=args.model, data=args.data,
                    train_examples=args.train_examples, seq_len=args.seq_len, max_hours=args.max_hours,
                    max_adapter_mb=args.max_adapter_mb, top=args.top, batch_size=args.batch_size,
                    epochs=args.epochs, results=args.results, mixed_precision=args.mixed_precision,
                    progress=not args.json, gpus=args.gpus, deploy=args.deploy,
                    max_latency_overhead=args.max_latency_overhead, adapters_per_base=args.adapters_per_base,
                    tuning_runs=args.tuning_runs, value_margin=args.value_margin)
    if args.export:  # before the answer is printed: a refusal is then the one line the command says
        from peftbench.export import export_recommendation

        export_recommendation(rec.to_dict(), args.export, args.export_dir, data=args.data,
                              autocast=args.mixed_precision)
    print(json.dumps(rec.to_dict(), indent=1, default=str) if args.json else render(rec.to_dict()))
    return 0


# Generous bounds: past them a value is a typo, and the engine would trace for minutes before refusing it.
MOST_GPUS = 65_536
MOST_ADAPTERS_PER_BASE = 1_000_000


def check_gpu_and_serving_values(args: argparse.Namespace) -> None:
    """--gpus, --max-latency-overhead and --adapters-per-base, checked before any evidence is read or any model
    traced (NaN compares false with every bound, so it is refused by name)."""
    from peftbench.validation import number

    for flag, value, most in (("--gpus", args.gpus, MOST_GPUS),
                              ("--adapters-per-base", args.adapters_per_base, MOST_ADAPTERS_PER_BASE)):
        if not 1 <= value <= most:
            raise UserError(f"{flag} must be an integer from 1 to {most}, got {value}")
    if args.max_latency_overhead is not None:
        number(args.max_latency_overhead, "--max-latency-overhead (a latency ratio to the base model, 1.2 = +20%)",
               low=1.0, high=1e6)


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    return f"{seconds / 60:.0f}m" if seconds < 3600 else f"{seconds / 3600:.1f}h"


def _fmt_size(n: float) -> str:
    return f"{n / 2**30:.1f}G" if n >= 2**30 else f"{n / 2**20:.1f}M"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _quality(c: dict[str, Any]) -> str:
    q, band = c["predicted_relative_quality"], c["quality_interval"]
    return "-" if q is None else f"{q:.0%} [{band[0]:.0%}, {band[1]:.0%}]"


def render(rec: dict[str, Any]) -> str:
    """The answer as printed: the pick, the table, each ranked method's reasons, what is not ranked and why."""
    out = _header(rec) + _ranking_table(rec)
    for i, c in enumerate(rec["ranking"], 1):
        out += _details(rec, i, c)
    out += _not_ranked(rec)
    base = rec["evidence_base"]
    out += ["", f"Evidence: {base['points']} points from {len(base['sources'])} sources (published corpus + "
                "reference suites); left out: " + "; ".join(f"{k} ({v})" for k, v in base["excluded"].items())]
    out += [f"Precision: {rec['precision']}"] + [f"Note: {n}" for n in rec["notes"] if not n.startswith("precision")]
    return "\n".join(out)


def _header(rec: dict[str, Any]) -> list[str]:
    task = rec["task"]
    size = f"{task['train_examples']:,.0f} examples" if task["train_examples"] else "size unknown"
    out = [f"Task: {task['query']} ({task['kind']}, {size}, {task['seq_len']} tokens, effective batch "
           f"{task['effective_batch']})   GPU: {rec['gpu']}   Model: {rec['model']}", ""]
    decision = rec.get("decision")
    if decision:
        out += [f"Pick: {decision['pick']}. {decision['summary']}"]
        if decision["best_value"]:
            out.append(f"Best value: {decision['best_value']} (see below)")
        out.append("")
    return out


def _ranking_table(rec: dict[str, Any]) -> list[str]:
    # "step" is one optimizer step of the effective batch (micro-batch time x accumulation): methods given
    # different micro-batches to fit are compared on the same work.
    task, decision = rec["task"], rec.get("decision") or {}
    hours = "CPU-h" if str(decision.get("cost_unit", "")).startswith("CPU-h") else "GPU-h"
    rows = [["#", "method", "vs full FT (80%)", "risk score", "evidence (eff./near)", "peak", "step", "epoch",
             hours, "saved"]]
    for i, c in enumerate(rec["ranking"], 1):
        step = c["step_seconds"] * c["gradient_accumulation"] if c["step_seconds"] is not None else None
        rows.append([str(i), c["method"], _quality(c), f"{c['risk_score']:+.3f}",
                     f"{c['evidence_weight']:.1f} / {c['near_comparisons']}", _fmt_size(c["peak_bytes"]),
                     _fmt_time(step), _fmt_time(c["epoch_seconds"]),
                     "?" if c.get("gpu_hours") is None else f"{c['gpu_hours']:.3g}", _fmt_size(c["adapter_bytes"])])
    if len(rows) == 1:
        return ["No method is ranked (see below)."]
    unit = decision.get("cost_unit", "GPU-h")
    cost = "the whole training" if unit == hours else unit
    return [_table(rows), f"(peak: per {'GPU' if hours == 'GPU-h' else 'process'}; step: one optimizer step of "
                          f"the effective batch of {task['effective_batch']}; epoch: one pass over the data; "
                          f"{hours}: {cost}{', every card counted' if hours == 'GPU-h' else ''}"
                          + (f", {task['epochs']:g} epochs)" if unit == hours else ")")]


def _details(rec: dict[str, Any], i: int, c: dict[str, Any]) -> list[str]:
    """One ranked method: all the first's reasons and three evidence lines, the first of each for the rest."""
    head = ("" if i > 1 else "provisional: one source's evidence" if not c.get("may_lead", True)
            else "recommended" if rec["separates"] else "best by a hair")
    out = ["", f"{i}. {c['method']}" + (f" ({head})" if head else "")]
    out += [f"   - {r}" for r in (c["reasons"] if i == 1 else c["reasons"][:1])]
    out += [f"   ! {w}" for w in c["warnings"]]
    out.append(f"   run: {c['override']}")
    return out + [f"   evidence: {e}" for e in c["evidence"][: 3 if i == 1 else 1]]


def _not_ranked(rec: dict[str, Any]) -> list[str]:
    by_status: dict[str, list[dict[str, Any]]] = {}
    for c in rec["not_ranked"]:
        by_status.setdefault(c["status"], []).append(c)
    out = []
    below = by_status.pop("ranked", [])  # ranked past --top: their places and predictions, in order
    if below:
        out += ["", f"Below the top {len(rec['ranking'])}:"]
        out += [f"  {i}. {c['method']}: {_quality(c)} of full FT, risk score {c['risk_score']:+.3f}"
                for i, c in enumerate(below, len(rec["ranking"]) + 1)]
    for status, items in by_status.items():
        out += ["", f"{status.capitalize()}:"]
        for c in items:
            fix = f"; would fit with: {' or '.join(c['would_fit_with'])}" if c["would_fit_with"] else ""
            # A thin method's prediction is still shown, as provisional: the user sees what the evidence
            # suggests without it being ranked.
            guess = (f" (provisional: {_quality(c)} of full FT)" if status.startswith("too little")
                     and c["predicted_relative_quality"] is not None else "")
            out.append(f"  - {c['method']}{guess}: {c['excluded_because'] or status}{fix}")
            if status.startswith(("no evidence", "too little")) and c["evidence"]:
                out.append(f"      nearest: {c['evidence'][0]}")
    return out
