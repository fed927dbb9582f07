"""What the reference results cover, task by task: which methods ran at a selected learning rate, on how many
seeds the suite's default method set ran, what the sweeps cost, and whether the task can tell methods apart.

The bar the reference results are held to, read from the records rather than kept by hand in a README: every
applicable method at its selected rate on every reference task, the default set on three seeds.
`python -m peftbench.coverage` prints the table `results/README.md` shows; a test holds the shipped results to
what that README claims.

Json records in, plain data out (`results.latest_records`): no torch, no pandas.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftbench.informativeness import task_informativeness
from peftbench.methods.base import recorded_skip_stands
from peftbench.results import ResultStore, latest_records, reference_results_dir
from peftbench.suites import available_suites, load_suite

if TYPE_CHECKING:
    from peftbench.record import RunRecord

DEFAULT_SEEDS = (0, 1, 2)
BEGIN, END = "<!-- coverage: python -m peftbench.coverage --update results/README.md -->", "<!-- /coverage -->"


@dataclass(frozen=True)
class TaskCoverage:
    suite: str
    task: str
    tuned: tuple[str, ...]  # methods with an ok selected run (a learning rate chosen by its sweep)
    not_run: dict[str, str]  # method -> why it cannot run here (its skipped record's reason)
    missing: tuple[str, ...]  # applicable methods with no selected run yet
    default_seeds: dict[str, tuple[int, ...]]  # default-set method -> seeds of its selected runs
    sweep_runs: int
    cpu_hours: float  # wall seconds of the tuned runs (sweep and selected), summed
    informative: bool | None  # None: not judged yet (no selected runs)

    @property
    def default_complete(self) -> bool:
        """The suite's default set (those that can run here) has selected runs on seeds 0, 1 and 2."""
        return bool(self.default_seeds) and all(set(DEFAULT_SEEDS) <= set(s) for s in self.default_seeds.values())

    @property
    def complete(self) -> bool:
        return self.default_complete and not self.missing


def coverage(root: Path | None = None, methods: list[str] | None = None) -> list[TaskCoverage]:
    """One row per task of every shipped suite (smoke excluded: a plumbing check, not a reference)."""
    root = root or reference_results_dir()
    if methods is None:
        from peftbench.recommend.fitting import method_catalogue

        methods = sorted(method_catalogue())
    out = []
    for name in available_suites():
        if name == "smoke":
            continue
        suite = load_suite(name)
        records = latest_records([ResultStore.for_suite(name, root).path], include_sweep=True)
        tuned_records = [r for r in records if r.role in ("sweep", "selected")]
        verdicts = task_informativeness(records)
        for task in suite.tasks:
            out.append(_task(name, task.name, suite.methods, methods,
                             [r for r in tuned_records if r.task == task.name], verdicts.get(task.name)))
    return out


def _task(suite: str, task: str, default_set: tuple[str, ...], methods: list[str],
          records: list[RunRecord], verdict: Any) -> TaskCoverage:
    selected = [r for r in records if r.role == "selected" and r.ok]
    seeds: dict[str, set[int]] = defaultdict(set)
    for r in selected:
        seeds[r.method].add(int(r.seed or 0))
    # A skip recorded before the method could apply there (an older `Method.applicability`) is work not yet
    # done, not a reason: resuming the suite reruns it. A method with ok selected runs is not "not run".
    not_run = {r.method: r.error or "skipped" for r in records
               if r.status == "skipped" and r.method not in seeds and recorded_skip_stands(r)}
    tuned = tuple(sorted(seeds))
    return TaskCoverage(
        suite=suite, task=task, tuned=tuned, not_run=not_run,
        missing=tuple(m for m in methods if m not in seeds and m not in not_run),
        default_seeds={m: tuple(sorted(seeds.get(m, ()))) for m in default_set if m not in not_run},
        sweep_runs=sum(r.is_sweep and r.ok for r in records),
        cpu_hours=sum(float(r.wall_seconds or 0) for r in records) / 3600,
        informative=None if verdict is None else bool(verdict.informative))


def markdown(rows: list[TaskCoverage]) -> str:
    lines = ["| task | tuned methods | default set, seeds 0-2 | sweep runs | CPU-h | separates methods? |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        short = [m for m, s in row.default_seeds.items() if not set(DEFAULT_SEEDS) <= set(s)]
        default = "yes" if row.default_complete else ("no runs" if not any(row.default_seeds.values())
                                                     else "missing " + ", ".join(short))
        tuned = f"{len(row.tuned)}" + (f" ({len(row.missing)} not yet)" if row.missing else "")
        informative = {None: "not judged yet", True: "yes", False: "no"}[row.informative]
        lines.append(f"| {row.suite}/{row.task} | {tuned} | {default} | {row.sweep_runs} | {row.cpu_hours:.1f} | "
                     f"{informative} |")
    why_not: dict[tuple[str, str], list[str]] = defaultdict(list)
    for row in rows:
        for method, reason in row.not_run.items():
            why_not[(method, reason)].append(row.task)
    done = sum(r.complete for r in rows)
    lines += ["", f"{done} of {len(rows)} tasks complete (every applicable method tuned, the default set on three "
              f"seeds); {sum(r.default_complete for r in rows)} with the default set on three seeds; "
              f"{sum(r.cpu_hours for r in rows):.1f} CPU-hours of tuned runs in all.", "", "Not run, and why:"]
    lines += [f"- {method} on {len(tasks)} task(s) ({', '.join(sorted(tasks))}): {reason}"
              for (method, reason), tasks in sorted(why_not.items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m peftbench.coverage", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=None, help="a reference results root (default: shipped)")
    parser.add_argument("--update", type=Path, default=None, metavar="FILE",
                        help=f"replace the text between {BEGIN} and {END} in FILE (results/README.md)")
    args = parser.parse_args(argv)
    table = markdown(coverage(args.results))
    if args.update is None:
        print(table)
        return 0
    text = args.update.read_text()
    if BEGIN not in text or END not in text:
        print(f"error: {args.update} has no {BEGIN} ... {END} section to update")
        return 2
    head, rest = text.split(BEGIN, 1)
    args.update.write_text(head + BEGIN + "\n" + table + "\n" + END + rest.split(END, 1)[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
