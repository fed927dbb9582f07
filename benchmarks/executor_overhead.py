"""Executor overhead: wall time of the same small plan through `executor=ray` vs the local executor.

Same specs, same concurrency (`--jobs` worker processes at once locally; a local Ray instance with `--jobs`
CPUs and at most `--jobs` tasks in flight), fresh results folders each time, one shared peftbench cache (so
neither side pays a cold estimate). The two alternate in rounds (local, ray, then ray, local, ...) so machine
noise hits both alike. Ray's start-up is timed apart and left out of the ratio: a cluster user has a running
cluster. Prints each round and the ratio of total wall times (target <= 1.10 for runs of a minute or more).

    python benchmarks/executor_overhead.py [--steps 60] [--methods lora,ia3] [--jobs 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def timed_plan(plan, executor, root: Path) -> tuple[float, list[str]]:
    from peftbench.runs.runner import run_plan

    start = time.perf_counter()
    summary = run_plan(plan, root, executor=executor, show_progress=False)
    return time.perf_counter() - start, [r.status for r in summary.records]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="train.max_steps of each run")
    parser.add_argument("--methods", default="lora,ia3")
    parser.add_argument("--jobs", type=int, default=2, help="concurrent runs, both executors")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import ray

    from peftbench.overrides import parse_overrides
    from peftbench.runs.executor import LocalExecutor
    from peftbench.runs.plan import build_plan
    from peftbench.runs.ray_executor import RayExecutor, RayOptions

    plan = build_plan(parse_overrides(["suite=smoke", "tasks=[rt_sentiment]", f"methods=[{args.methods}]",
                                       f"train.max_steps={args.steps}", "sizes.eval=64", f"jobs={args.jobs}"]))
    start = time.perf_counter()
    ray.init(num_cpus=args.jobs, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    ray_start = time.perf_counter() - start
    executors = {"local": LocalExecutor(plan.timeout, args.jobs),
                 "ray": RayExecutor(RayOptions(max_in_flight=args.jobs), plan.timeout)}
    totals = {"local": 0.0, "ray": 0.0}
    print(f"{len(plan.specs)} runs ({args.methods}, {args.steps} steps), {args.jobs} at a time; "
          f"Ray instance started in {ray_start:.1f} s (not counted)")
    with tempfile.TemporaryDirectory(prefix="executor-overhead-") as tmp:
        for round_ in range(args.rounds):
            order = ["local", "ray"] if round_ % 2 == 0 else ["ray", "local"]
            times = {}
            for name in order:
                seconds, statuses = timed_plan(plan, executors[name], Path(tmp) / f"{name}{round_}")
                assert statuses and all(s == "ok" for s in statuses), statuses
                times[name] = seconds
                totals[name] += seconds
            print(f"round {round_ + 1}: local {times['local']:.1f} s, ray {times['ray']:.1f} s, "
                  f"ratio {times['ray'] / times['local']:.3f}")
    ray.shutdown()
    print(f"ray / local wall time: {totals['ray'] / totals['local']:.3f} "
          f"(total {totals['ray']:.1f} s vs {totals['local']:.1f} s; target <= 1.10)")


if __name__ == "__main__":
    main()
