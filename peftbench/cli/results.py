"""`peftbench results suite=NAME [--format table|csv|parquet|json] [-o FILE]`: one tidy table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from peftbench.errors import UserError

SUMMARY_COLUMNS = ["task", "method", "family", "seed", "status", "trainable_params", "train_seconds",
                   "tokens_per_second", "memory.peak_rss_train_bytes", "adapter_bytes"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("results", help="the results of a suite as one table")
    parser.add_argument("selector", metavar="suite=NAME", help="suite=NAME, or suite=all")
    parser.add_argument("--format", choices=("table", "csv", "parquet", "json"), default="table")
    parser.add_argument("-o", "--output", type=Path, help="write to a file (required for parquet)")
    parser.add_argument("--results", type=Path, default=None, help="results root (default: ./results)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from peftbench.results import RESULTS_DIR, RUNS_FILE, load_table, suite_result_files

    key, _, suite = args.selector.partition("=")
    if key != "suite" or not suite:
        raise UserError(f"expected suite=NAME, got '{args.selector}'")
    root = args.results or RESULTS_DIR
    paths = suite_result_files(root) if suite == "all" else [root / suite / RUNS_FILE]
    if not any(p.is_file() for p in paths):
        raise UserError(f"no results for suite '{suite}' under {root}")
    table = load_table(paths)
    if args.format == "parquet" and not args.output:
        raise UserError("--format parquet needs -o FILE")
    if args.format == "table":
        print(seed_summary(table).to_string())
        return 0
    writers = {"csv": lambda out: table.to_csv(out, index=False),
               "json": lambda out: table.to_json(out, orient="records", indent=1),
               "parquet": lambda out: table.to_parquet(out, index=False)}
    writers[args.format](args.output or sys.stdout)
    return 0


def seed_summary(table):
    """Mean ± std over seeds of each task x method configuration's metrics, with the seed count."""
    import pandas as pd

    ok = table[table["status"] == "ok"]
    metric_cols = [c for c in ok.columns if c.startswith("metrics.")]
    rows = []
    for (task, method), group in ok.groupby(["task", "config"], sort=True):  # config: "lora r=16" apart
        row = {"task": task, "method": method, "seeds": len(group)}
        for col in metric_cols:
            values = group[col].dropna()
            if len(values):
                std = values.std(ddof=1) if len(values) > 1 else 0.0
                row[col.removeprefix("metrics.")] = f"{values.mean():.1f} ± {std:.1f}"
        row["train_s"] = round(group["train_seconds"].mean(), 1)
        row["peak_MiB"] = round(group["memory.peak_rss_train_bytes"].mean() / 2**20)
        rows.append(row)
    not_ok = table[table["status"] != "ok"]
    if "error" not in not_ok:
        not_ok = not_ok.assign(error="")
    # One row per task x configuration x outcome, with the seeds it happened for (a skip repeats per seed).
    for (task, config, status, error), group in not_ok.fillna({"error": ""}).groupby(
            ["task", "config", "status", "error"], sort=True):
        seeds = ",".join(str(int(s)) for s in sorted(group["seed"]))
        rows.append({"task": task, "method": config, "seeds": 0,
                     "status": f"{status} (seeds {seeds}): {str(error)[:50]}"})
    return pd.DataFrame(rows).set_index(["task", "method"]).astype(object).fillna("")
