"""`peftbench run suite=NAME [key=value ...] [--force] [--retry-failed]`"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from peftbench.record import RunRecord


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="run a suite: every task x method x seed, one process per run",
        description="Run a benchmark suite. Overrides: suite=NAME methods=[lora,ia3] seeds=[0,1] "
                    "model=NAME|PATH|HUB_ID tasks=[a,b] scale=default|full sizes.train=N sizes.eval=N "
                    "timeout=SECONDS device=cpu|cuda jobs=N|auto train.KEY=V methods.NAME.KEY=V. "
                    "tune=lr [tune.grid=[0.33,1,3]]: per (task, method), sweep the learning rate over the grid "
                    "(factors of the method's rate) scored on a validation split carved from the training rows, "
                    "then run the best on the seeds (sweep runs recorded with role sweep, the others selected). "
                    "train.gradient_accumulation_steps=N: batch_size is the micro-batch; "
                    "train.gradient_checkpointing=true recomputes activations in backward.")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    parser.add_argument("--force", action="store_true", help="rerun runs that already have a record")
    parser.add_argument("--retry-failed", action="store_true",
                        help="rerun the runs recorded as failed, timeout or oom (not ok or skipped ones); "
                             "the new record replaces the old")
    parser.add_argument("--results", type=_folder, default=None,
                        help="results root (default: $PEFTBENCH_RESULTS, else ./results in this directory)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--into-reference", action="store_true",
                        help="maintainers: write into the reference results (refused unless the reference folder "
                             "is writable and inside a source checkout)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from peftbench.errors import UserError
    from peftbench.overrides import parse_overrides
    from peftbench.paths import check_results_dir
    from peftbench.results import is_reference_dir, user_results_dir
    from peftbench.runs.plan import build_plan
    from peftbench.runs.runner import run_plan, run_tuned
    from peftbench.runs.tuning import check_split_sizes, parse_tune
    from peftbench.telemetry import machine_id

    if args.into_reference:
        root = reference_target(args.results)
    else:
        root = user_results_dir(args.results)
        if is_reference_dir(root):
            raise UserError(f"{root} holds the reference results shipped with peftbench, which are read-only: "
                            "write your runs elsewhere (--results DIR)")
        check_results_dir(root, "--results" if args.results is not None else "the results folder")
    overrides = parse_overrides(args.overrides)
    machine_id()  # a malformed $PEFTBENCH_MACHINE_ID is bad input: refused here, before anything is written
    tune = parse_tune(overrides.values.get("tune"), overrides.tune)
    plan = build_plan(overrides)
    if tune is not None:
        check_split_sizes(plan, tune)
        summary = run_tuned(plan, tune, root, force=args.force, retry_failed=args.retry_failed,
                            show_progress=not args.no_progress)
    else:
        summary = run_plan(plan, root, force=args.force, retry_failed=args.retry_failed,
                           show_progress=not args.no_progress)
    print(_summary_table(summary))
    return 0


def _folder(text: str) -> Path:
    """`--results DIR`: argparse's `Path("")` would be the current folder, so an empty value (an unset shell
    variable) is refused rather than writing results wherever the command runs."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; name a folder for the results")
    return Path(text)


def reference_target(explicit: Path | None) -> Path:
    """Where `--into-reference` writes: the shipped reference folder, or `--results DIR` when that is a copy
    of it (a folder named `reference` whose parent is `results`). Refused unless the folder is writable and
    sits in a source checkout (`pyproject.toml` two levels up): an installed package's data is not a place
    to write, and a user's results must never be mixed into the maintainers' reference set by accident."""
    import os

    from peftbench.errors import UserError
    from peftbench.results import reference_results_dir

    root = Path(explicit).expanduser().resolve() if explicit is not None else reference_results_dir().resolve()
    checkout = root.parent.parent
    if root.name != "reference" or root.parent.name != "results" or not (checkout / "pyproject.toml").is_file():
        raise UserError(f"--into-reference: {root} is not the results/reference folder of a source checkout "
                        "(no pyproject.toml two levels up); it writes only into a checkout's reference results")
    if not root.is_dir() or not os.access(root, os.W_OK):
        raise UserError(f"--into-reference: {root} is not a writable folder")
    return root


def _summary_table(summary) -> str:
    import pandas as pd

    lines = []
    if summary.records:
        rows = [{"task": r.task, "method": r.method, "seed": r.seed, "role": r.role or "",
                 "lr": r.learning_rate, "status": r.status,
                 "score": _primary(r), "train_s": r.train_seconds, "peak_MiB": _peak_mib(r),
                 "note": (r.error or "")[:60]} for r in summary.records]
        lines.append(pd.DataFrame(rows).to_string(index=False))
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.status_counts().items())) or "nothing new"
    elsewhere = (f"; {summary.run_elsewhere} run by another `peftbench run` at the same time"
                 if summary.run_elsewhere else "")
    lines.append(f"\n{counts}; {summary.skipped_existing} already recorded on this machine{elsewhere}. "
                 f"Results: {summary.results_file}")
    return "\n".join(lines)


def _primary(record: RunRecord) -> str:
    name = record.primary_metric(("accuracy", "rougeL", "chrf"))
    return f"{name}={record.metrics[name]:.1f}" if name in ("accuracy", "rougeL", "chrf") else ""


def _peak_mib(record: RunRecord) -> float | None:
    peak = record.peak_memory_bytes
    return round(peak / 2**20) if peak else None
