"""Run a plan: skip what is recorded, execute the rest through an executor, append each record."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftbench.results import ResultStore
from peftbench.runs.executor import Executor, LocalExecutor
from peftbench.runs.plan import Plan
from peftbench.runs.spec import RunSpec


@dataclass
class RunSummary:
    results_file: Path
    skipped_existing: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)

    def status_counts(self) -> Counter:
        return Counter(r["status"] for r in self.records)


def run_plan(plan: Plan, results_root: Path, force: bool = False,
             executor: Executor | None = None, show_progress: bool = True) -> RunSummary:
    store = ResultStore.for_suite(plan.suite.name, results_root)
    store.repair()
    from peftbench.telemetry import machine_id

    todo = _dedupe(plan.specs)
    here = machine_id()  # resume skips what *this* machine recorded; committed reference runs are re-measured
    if force:
        store.remove((s.run_id for s in todo), machine=here)
    done = store.completed_ids(machine=here)
    pending = [s for s in todo if s.run_id not in done]
    summary = RunSummary(store.path, skipped_existing=len(todo) - len(pending))
    executor = executor or _executor_for(plan)
    progress = _Progress(len(pending), show_progress, step_bar=plan.jobs == 1)

    def on_record(spec: RunSpec, record: dict[str, Any]) -> None:
        store.append(record)
        summary.records.append(record)
        progress.finished(spec, record)

    try:
        executor.execute(pending, store.path.parent / "artifacts", on_record, progress.event)
    finally:
        progress.close()
    return summary


def _executor_for(plan: Plan) -> Executor:
    if plan.ray is not None:
        from peftbench.runs.ray_executor import RayExecutor

        return RayExecutor(plan.ray, plan.timeout)
    return LocalExecutor(plan.timeout, plan.jobs)


def _dedupe(specs: list[RunSpec]) -> list[RunSpec]:
    seen: dict[str, RunSpec] = {}
    for spec in specs:
        seen.setdefault(spec.run_id, spec)
    return list(seen.values())


class _Progress:
    """Two tqdm bars: runs done / total with ETA, and the current run's training steps (only when runs go
    one at a time: concurrent runs' steps would interleave in one bar)."""

    def __init__(self, total: int, enabled: bool, step_bar: bool = True) -> None:
        from tqdm import tqdm

        self.suite_bar = tqdm(total=total, desc="runs", unit="run", position=0, disable=not enabled)
        self.step_bar = tqdm(total=0, desc="steps", unit="step", position=1, leave=False,
                             disable=not (enabled and step_bar))

    def event(self, spec: RunSpec, event: dict[str, Any]) -> None:
        if event.get("event") == "phase":
            self.step_bar.set_description(f"{spec.label()} {event['name']}")
            if event["name"] == "train":
                self.step_bar.reset(total=event["total"])
        elif event.get("event") == "step":
            self.step_bar.update(1)
            self.step_bar.set_postfix(loss=event["loss"])

    def finished(self, spec: RunSpec, record: dict[str, Any]) -> None:
        self.suite_bar.update(1)
        self.suite_bar.set_postfix_str(f"last: {spec.label()} {record['status']}")

    def close(self) -> None:
        self.step_bar.close()
        self.suite_bar.close()
