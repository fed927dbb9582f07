"""`peftbench pilot --data FILE --task KIND --model M --budget 15m [...]`: measure the top candidates on your data,
then decide."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pilot", help="measure the recommended candidates on your own data within a time budget, then decide",
        description="Splits your data by content hash into training and test rows, asks the recommender for the "
                    "candidates that fit, plans steps and learning-rate sweeps to fit --budget with the estimator "
                    "(printed before anything runs), runs them through the harness (resumable: rerun the same "
                    "command), and combines the measured test scores (paired bootstrap over test rows) with the "
                    "recommender's prior into a decision.")
    p.add_argument("--data", type=Path, required=True, help="your data: a csv, jsonl or parquet file")
    p.add_argument("--task", required=True, help="classification, summarization, translation, generation or qa")
    p.add_argument("--text-column", help="classification: the input text column (default: text)")
    p.add_argument("--label-column", help="classification: the label column (default: label)")
    p.add_argument("--input-column", help="generation: the input column (default: source)")
    p.add_argument("--target-column", help="generation: the output column (default: target)")
    p.add_argument("--model", required=True, help="a packaged model, a local model folder, or a hub id")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the pilot trains (default: cpu)")
    p.add_argument("--gpu", help="the GPU the full run is for, e.g. 24GB (costs and candidates); "
                                 "required with --device cuda")
    p.add_argument("--budget", required=True, help="time for the whole pilot: 15m, 2h, 1h30m")
    p.add_argument("--candidates", type=int, default=None, help="most candidates to measure (2-8; default: "
                                                                "as many as the budget allows, up to 3)")
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="results root: the pilot writes <results>/pilot_<data name>/ (default: ./results)")
    p.add_argument("--export", choices=("peft", "trl", "llamafactory", "axolotl"), default=None,
                   help="also write the decision as that tool's config, into <results>/pilot_<name>/export-TOOL")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from peftbench.pilot.pilot import run
    from peftbench.pilot.request import build_request

    request = build_request(args)
    outcome = run(request, show_progress=not args.no_progress)
    print(f"Pilot: {outcome.plan.describe()}")
    for line in outcome.lines:
        print(f"  {line}")
    print(f"Suite: {outcome.suite_path}   Records: {request.results / request.name / 'runs.jsonl'}")
    from peftbench.report.pilot_page import write_pilot_report

    print(f"Report: {write_pilot_report(request.results / request.name)}")
    return 0
