"""`peftbench results suite=NAME [--format table|csv|parquet|json] [-o FILE]`: one tidy table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from peftbench.errors import UserError, shown

SUMMARY_COLUMNS = ["task", "method", "family", "seed", "status", "trainable_params", "train_seconds",
                   "tokens_per_second", "memory.peak_rss_train_bytes", "adapter_bytes"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("results", help="the results of a suite as one table")
    parser.add_argument("selector", metavar="suite=NAME", help="suite=NAME, or suite=all")
    parser.add_argument("--format", choices=("table", "csv", "parquet", "json"), default="table")
    parser.add_argument("-o", "--output", type=Path, help="write to a file (required for parquet)")
    parser.add_argument("--results", type=Path, default=None,
                        help="results root (default: $PEFTBENCH_RESULTS, else ./results; where neither holds the "
                             "suite, the reference results shipped with peftbench)")
    parser.add_argument("--reference", action="store_true", help="read the reference results shipped with peftbench")
    parser.add_argument("--show-sweep", action="store_true",
                        help="also show learning-rate sweep runs (tune=lr; scored on a validation split carved "
                             "from the training rows, not on the eval split)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from peftbench.paths import check_name, check_output_file
    from peftbench.results import choose_result_set, disk_use, load_table

    key, _, suite = args.selector.partition("=")
    if key != "suite" or not suite:
        raise UserError(f"expected suite=NAME, got {shown(args.selector)}")
    if args.format == "parquet" and not args.output:
        raise UserError("--format parquet needs -o FILE")
    if suite != "all":
        check_name(suite, "suite")
    if args.output is not None:
        check_output_file(args.output)
    result_set = choose_result_set(suite, args.results, args.reference)
    paths = result_set.files(suite)
    if not paths:
        raise UserError(f"no results for suite '{suite}' under {result_set.root}")
    table = load_table(paths, include_sweep=args.show_sweep)
    if table.empty:  # an empty runs file, or one whose lines were all skipped (said above, per file)
        where = ", ".join(map(str, paths))
        if args.show_sweep or load_table(paths, include_sweep=True).empty:
            raise UserError(f"no runs yet in {where}")
        raise UserError(f"only learning-rate sweep runs in {where}: --show-sweep shows them")
    if args.format == "table":
        print(f"Reading {result_set.describe()}.")
        print(seed_summary(table).to_string())
        print("\n" + informativeness_table(paths))
        usage = disk_use(result_set.root, suite)
        print(f"\nDisk: {_mib(usage['runs_files'])} of runs files, {_mib(usage['artifacts'])} of artifacts "
              f"(adapters, logs) under {result_set.root / suite if suite != 'all' else result_set.root}.")
        return 0
    writers = {"csv": lambda out: table.to_csv(out, index=False),
               "json": lambda out: table.to_json(out, orient="records", indent=1),
               "parquet": lambda out: table.to_parquet(out, index=False)}
    try:
        writers[args.format](args.output or sys.stdout)
    except OSError as exc:  # checked above; a full disk or a folder removed meanwhile still lands here
        raise UserError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    return 0


def _mean(group, column: str, scale: float = 1.0, digits: int | None = None) -> float | str:
    """The column's mean over a configuration's runs, rounded; blank where none of them recorded it (a record
    from before the field existed has none)."""
    if column not in group:
        return ""
    values = group[column].dropna()
    return round(values.mean() / scale, digits) if len(values) else ""


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def seed_summary(table):
    """Mean ± std over seeds of each task x method configuration's metrics, with the seed count."""
    import pandas as pd

    ok = table[table["status"] == "ok"]
    metric_cols = [c for c in ok.columns if c.startswith("metrics.")]
    rows = []
    # One row per configuration: "lora r=16" apart, and two runs that differ in steps, model, data or
    # learning rate never averaged as two seeds of one (config_id).
    for (task, method, _), group in ok.groupby(["task", "config", "config_id"], sort=True):
        row = {"task": task, "method": method, "seeds": len(group)}
        if "role" in group and group["role"].notna().any():
            row["role"] = group["role"].iloc[0] if isinstance(group["role"].iloc[0], str) else ""
            row["lr"] = group["train_config.learning_rate"].iloc[0]
        for col in metric_cols:
            values = group[col].dropna()
            if len(values) > 1:
                row[col.removeprefix("metrics.")] = f"{values.mean():.1f} ± {values.std(ddof=1):.1f}"
            elif len(values):
                row[col.removeprefix("metrics.")] = f"{values.iloc[0]:.1f}"  # one seed: no spread to show
        row["train_s"] = _mean(group, "train_seconds", digits=1)
        row["peak_MiB"] = _mean(group, "memory.peak_rss_train_bytes", scale=2**20)
        row.update(_inference_columns(group))  # after training: inference overhead, forgetting
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


def informativeness_table(paths: list[Path]) -> str:
    """Per task: the smallest difference it can detect, and whether it separates methods at all
    (peftbench.informativeness); a non-informative task is said to be so."""
    import pandas as pd

    from peftbench.informativeness import suite_baselines, task_informativeness
    from peftbench.results import latest_records

    records = latest_records(paths)
    baselines = {}
    for suite in sorted({r.suite for r in records}):
        baselines.update(suite_baselines(suite))
    rows = []
    for task, info in task_informativeness(records, baselines).items():
        rows.append({"task": task, "metric": info.metric, "methods": info.methods, "seeds": info.seeds,
                     "eval_n": info.eval_examples, "detectable": info.detectable_difference,
                     "spread": info.spread, "best": info.best, "chance": info.chance, "majority": info.majority,
                     "informative": "yes" if info.informative else "NO", "why": info.reason})
    if not rows:
        return ""
    text = pd.DataFrame(rows).set_index("task").astype(object).fillna("").to_string()
    return ("Can each task tell methods apart? detectable = smallest difference between two methods' means it can "
            "detect (points, 95%); spread = best minus worst method mean; NO = non-informative: no method "
            "separates (see peftbench/informativeness.py)\n" + text)


# Inference latency ratio to the base model (unmerged / merged) and forgetting (change of general-text loss,
# nats/token) from the record's `inference` and `forgetting` (peftbench/runs/post_training.py); blank where
# a run did not measure them (older runs, encoders, methods that cannot merge).
_INFERENCE_COLUMNS = {"infer_x": "inference.overhead_unmerged", "infer_x_merged": "inference.overhead_merged",
                      "forget_nats": "forgetting.delta_nats"}


def _inference_columns(group) -> dict[str, str]:
    out = {}
    for name, column in _INFERENCE_COLUMNS.items():
        if column not in group:
            continue
        values = group[column].dropna()
        if len(values):
            out[name] = f"{values.astype(float).mean():+.3f}" if name == "forget_nats" else \
                f"{values.astype(float).mean():.2f}"
    return out
