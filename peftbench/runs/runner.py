"""Run a plan: skip what is recorded, claim and execute the rest through an executor, record each run once."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftbench.record import RunRecord
from peftbench.results import ResultStore
from peftbench.runs.claims import RunClaims
from peftbench.runs.executor import Executor, LocalExecutor
from peftbench.runs.plan import Plan
from peftbench.runs.spec import RunSpec
from peftbench.runs.tuning import MAX_EXTENSIONS, TuneConfig, extension_specs, selected_specs, sweep_specs

# Statuses `--retry-failed` reruns: the run did not finish. `ok` and `skipped` (method not applicable) stand.
RETRY_STATUSES = ("failed", "timeout", "oom")


@dataclass
class RunSummary:
    results_file: Path
    skipped_existing: int = 0
    run_elsewhere: int = 0  # claimed or recorded by another `peftbench run` of this suite meanwhile
    records: list[RunRecord] = field(default_factory=list)

    def status_counts(self) -> Counter:
        return Counter(r.status for r in self.records)


def run_plan(plan: Plan, results_root: Path, force: bool = False, retry_failed: bool = False,
             executor: Executor | None = None, show_progress: bool = True) -> RunSummary:
    """Run what is not recorded on this machine yet (with `force`, everything; with `retry_failed`, also the
    runs whose record says they did not finish); a rerun's record replaces the earlier one. Several drivers
    may run one plan into one folder at once: each run is claimed before it starts (see `claims`)."""
    from peftbench.telemetry import machine_id

    store = ResultStore.for_suite(plan.suite.name, results_root)
    store.repair()
    todo = _dedupe(plan.specs)
    here = machine_id()  # resume skips what *this* machine recorded; committed reference runs are re-measured
    recorded = store.latest(machine=here)
    # Runs to do again, each with the record it replaces: if that record changes meanwhile, another driver
    # has already redone the run.
    stale_skips = _stale_skips(todo, recorded)
    redo = {rid: _fingerprint(r) for rid, r in recorded.items()
            if force or (retry_failed and r.status in RETRY_STATUSES) or rid in stale_skips}
    pending = [s for s in todo if s.run_id not in recorded or s.run_id in redo]
    summary = RunSummary(store.path, skipped_existing=len(todo) - len(pending))
    executor = executor or _executor_for(plan)
    progress = _Progress(len(pending), show_progress, step_bar=plan.jobs == 1)
    claims = RunClaims(store.path.parent)

    def still_to_do(spec: RunSpec) -> bool:
        current = store.latest(machine=here).get(spec.run_id)
        return current is None or (spec.run_id in redo and _fingerprint(current) == redo[spec.run_id])

    def on_record(spec: RunSpec, fields: RunRecord | dict[str, Any]) -> None:
        # a worker's fields are stamped with the current schema version here
        record = fields if isinstance(fields, RunRecord) else RunRecord.new(fields)
        if spec.run_id in redo:
            store.replace(record, machine=here)
        else:
            store.append(record)
        claims.release(spec.run_id, recorded=True)
        summary.records.append(record)
        progress.finished(spec, record)

    def skip_elsewhere(spec: RunSpec) -> None:
        summary.run_elsewhere += 1
        progress.elsewhere(spec)

    try:
        with interrupts_raised():
            executor.execute(_Claimed(pending, claims, still_to_do, skip_elsewhere),
                             store.path.parent / "artifacts", on_record, progress.event)
    finally:
        claims.release_all()
        progress.close()
    return summary


class _Claimed:
    """The pending runs, each yielded only once this driver has claimed it and it is still to do; sized
    (the executor sizes its pool by the count) but lazy, so that concurrent drivers share the runs."""

    def __init__(self, pending: list[RunSpec], claims: RunClaims, still_to_do: Callable[[RunSpec], bool],
                 on_skip: Callable[[RunSpec], None]) -> None:
        self.pending, self.claims, self.still_to_do, self.on_skip = pending, claims, still_to_do, on_skip

    def __len__(self) -> int:
        return len(self.pending)

    def __iter__(self) -> Iterator[RunSpec]:
        for spec in self.pending:
            if not self.claims.try_claim(spec.run_id):
                self.on_skip(spec)
                continue
            if not self.still_to_do(spec):  # recorded by another driver between our plan and our claim
                self.claims.release(spec.run_id, recorded=False)
                self.on_skip(spec)
                continue
            yield spec


def _fingerprint(record: RunRecord) -> str:
    return record.to_json()


@contextlib.contextmanager
def interrupts_raised() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt in the driver, as Ctrl-C does, so that the executor stops
    its workers and removes its temporary folders instead of dying with them left behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stale_skips(specs: list[RunSpec], recorded: dict[str, RunRecord]) -> set[str]:
    """Runs recorded as skipped whose skip no longer stands (`methods.base.recorded_skip_stands`: an older
    applicability revision recorded it and the method now applies there): they are run again."""
    from peftbench.methods.base import recorded_skip_stands

    return {s.run_id for s in specs if s.run_id in recorded and recorded[s.run_id].status == "skipped"
            and not recorded_skip_stands(recorded[s.run_id])}


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
    """The suite bar counts runs, in-flight runs by the share of their training steps done, so it moves (and
    its ETA holds) while a long run trains; its postfix names each run in flight with its steps and own ETA.
    A second bar shows the current run's steps when runs go one at a time."""

    def __init__(self, total: int, enabled: bool, step_bar: bool = True) -> None:
        from tqdm import tqdm

        self.suite_bar = tqdm(total=total, desc="runs", unit="run", position=0, disable=not enabled,
                              bar_format="{l_bar}{bar}| {n:.1f}/{total} runs [{elapsed}<{remaining}]{postfix}")
        self.step_bar = tqdm(total=0, desc="steps", unit="step", position=1, leave=False,
                             disable=not (enabled and step_bar))
        self.finished_runs = 0
        self.in_flight: dict[str, tuple[str, int, int, float]] = {}  # run id -> (label, done, total, started)

    def event(self, spec: RunSpec, event: dict[str, Any]) -> None:
        if event.get("event") == "phase":
            self.step_bar.set_description(f"{spec.label()} {event['name']}")
            if event["name"] == "train":
                self.step_bar.reset(total=event["total"])
                self.in_flight[spec.run_id] = (spec.label(), 0, int(event["total"] or 0), time.monotonic())
        elif event.get("event") == "step":
            self.step_bar.update(1)
            self.step_bar.set_postfix(loss=event["loss"])
            label, _, total, started = self.in_flight.get(spec.run_id, (spec.label(), 0, 0, time.monotonic()))
            self.in_flight[spec.run_id] = (label, int(event["step"]), int(event.get("total") or total), started)
            self._refresh()

    def _refresh(self) -> None:
        fractions = sum(done / total for _, done, total, _ in self.in_flight.values() if total)
        self.suite_bar.n = self.finished_runs + min(fractions, len(self.in_flight))
        parts = []
        for label, done, total, started in self.in_flight.values():
            eta = (time.monotonic() - started) / done * (total - done) if done else None
            parts.append(f"{label} {done}/{total} steps" + (f", ~{eta:.0f}s left" if eta is not None else ""))
        self.suite_bar.set_postfix_str("; ".join(parts), refresh=False)
        self.suite_bar.refresh()

    def elsewhere(self, spec: RunSpec) -> None:
        self.suite_bar.total = max(0, (self.suite_bar.total or 0) - 1)  # not ours to run after all
        self.suite_bar.refresh()

    def finished(self, spec: RunSpec, record: RunRecord) -> None:
        self.in_flight.pop(spec.run_id, None)
        self.finished_runs += 1
        self._refresh()
        self.suite_bar.set_postfix_str(f"last: {spec.label()} {record.status}")

    def close(self) -> None:
        self.step_bar.close()
        self.suite_bar.close()


def run_tuned(plan: Plan, config: TuneConfig, results_root: Path, force: bool = False, retry_failed: bool = False,
              show_progress: bool = True) -> Any:
    """Sweep, select, run the selected rates on the seeds; one summary of both phases. `force` and
    `retry_failed` apply to every phase, as in `run_plan`."""
    from peftbench.results import latest_records

    sweeps = sweep_specs(plan.specs, config)
    sweep_plan = dataclasses.replace(plan, specs=[s for group in sweeps.values() for s in group])
    first = run_plan(sweep_plan, results_root, force=force, retry_failed=retry_failed, show_progress=show_progress)
    store = ResultStore.for_suite(plan.suite.name, results_root)
    claims = RunClaims(store.path.parent)

    def settled(specs: list[RunSpec]) -> dict[str, RunRecord]:
        # Another `peftbench run` of this suite may still be running some of the sweep: selecting now would
        # treat its runs as failed, so wait for each one it holds to be recorded (or given up).
        for spec in specs:
            claims.wait_for(spec.run_id)
        return {r.run_id: r for r in latest_records([store.path], include_sweep=True)}

    records = settled(sweep_plan.specs)
    for _ in range(2 * MAX_EXTENSIONS):
        extra = {key: extension_specs(group, records, config.extensions) for key, group in sweeps.items()}
        extra = {key: specs for key, specs in extra.items() if specs}
        if not extra:
            break
        for key, specs in extra.items():
            sweeps[key] = sweeps[key] + specs
        more = [s for specs in extra.values() for s in specs]
        done = run_plan(dataclasses.replace(plan, specs=more), results_root, force=force,
                        retry_failed=retry_failed, show_progress=show_progress)
        first.records += done.records
        first.skipped_existing += done.skipped_existing
        records = settled(more)
    if not config.confirm:
        return first
    chosen = selected_specs(plan.specs, sweeps, records, config)
    second = run_plan(dataclasses.replace(plan, specs=chosen), results_root, force=force,
                      retry_failed=retry_failed, show_progress=show_progress)
    second.records[:0] = first.records
    second.skipped_existing += first.skipped_existing
    return second
