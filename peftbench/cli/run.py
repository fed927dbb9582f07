"""`peftbench run suite=NAME [key=value ...] [--force] [--retry-failed]`"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="run a suite: every task x method x seed, one process per run",
        description="Run a benchmark suite. Overrides: suite=NAME methods=[lora,ia3] seeds=[0,1] "
                    "model=NAME|PATH|HUB_ID tasks=[a,b] scale=default|full sizes.train=N sizes.eval=N "
                    "timeout=SECONDS device=cpu|cuda jobs=N|auto train.KEY=V methods.NAME.KEY=V")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    parser.add_argument("--force", action="store_true", help="rerun runs that already have a record")
    parser.add_argument("--retry-failed", action="store_true",
                        help="rerun the runs recorded as failed, timeout or oom (not ok or skipped ones); "
                             "the new record replaces the old")
    parser.add_argument("--results", type=Path, default=None,
                        help="results root (default: $PEFTBENCH_RESULTS, else ./results in this directory)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from peftbench.errors import UserError
    from peftbench.overrides import parse_overrides
    from peftbench.results import is_reference_dir, user_results_dir
    from peftbench.runs.plan import build_plan
    from peftbench.runs.runner import run_plan

    root = user_results_dir(args.results)
    if is_reference_dir(root):
        raise UserError(f"{root} holds the reference results shipped with peftbench, which are read-only: "
                        "write your runs elsewhere (--results DIR)")
    plan = build_plan(parse_overrides(args.overrides))
    summary = run_plan(plan, root, force=args.force, retry_failed=args.retry_failed,
                       show_progress=not args.no_progress)
    print(_summary_table(summary))
    return 0


def _summary_table(summary) -> str:
    import pandas as pd

    lines = []
    if summary.records:
        rows = [{"task": r["task"], "method": r["method"], "seed": r["seed"], "status": r["status"],
                 "score": _primary(r), "train_s": r.get("train_seconds"), "peak_MiB": _peak_mib(r),
                 "note": (r.get("error") or "")[:60]} for r in summary.records]
        lines.append(pd.DataFrame(rows).to_string(index=False))
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.status_counts().items())) or "nothing new"
    elsewhere = (f"; {summary.run_elsewhere} run by another `peftbench run` at the same time"
                 if summary.run_elsewhere else "")
    lines.append(f"\n{counts}; {summary.skipped_existing} already recorded on this machine{elsewhere}. "
                 f"Results: {summary.results_file}")
    return "\n".join(lines)


def _primary(record: dict) -> str:
    metrics = record.get("metrics") or {}
    for key in ("accuracy", "rougeL", "chrf"):
        if key in metrics:
            return f"{key}={metrics[key]:.1f}"
    return ""


def _peak_mib(record: dict) -> float | None:
    memory = record.get("memory") or {}
    peak = memory.get("cuda_max_reserved_bytes") or memory.get("peak_rss_train_bytes")
    return round(peak / 2**20) if peak else None
