"""The pilot's plan: which candidates, how many training steps, and what it will cost, fitted to the budget with
the estimator before anything runs.

Candidates come from the recommender (its order: the decision's pick first), among the methods that fit the
hardware, full fine-tuning added where it fits. Each candidate costs `RUNS_PER_CANDIDATE` runs: the x1/3, x1, x3
learning-rate sweep and one more where an edge of it wins (the harness extends it); the verdict reads the
sweep's validation scores (`pilot.verdict`), so no run is repeated at the selected rate. A run's time is the
estimator's step time on the pilot's device times the steps, plus scoring the validation rows and a fixed
start-up (loading the model and data in a fresh process). The plan takes as many candidates as the budget allows
(at least two) at the most steps up to `EPOCHS` passes over the sweep's training rows; a budget too small for two
candidates at `MIN_STEPS` is refused with what it would need.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from peftbench.errors import UserError

# The x1/3, x1, x3 sweep and one extension where an edge of it wins. The extension is budgeted, not hoped away:
# both pilots measured here extended sweeps (the 15-minute SmolLM2 pilot: IA3 once, full fine-tuning twice), runs
# the plan had not counted. The pilot holds the harness to this one extension.
RUNS_PER_CANDIDATE = 4
GRID_RUNS = 3  # of which the sweep's grid
BUDGET_SHARE = 0.9  # of the budget planned: the rest absorbs the estimate's error
# A fresh worker's time outside training and scoring (imports, model and data loading, the preflight estimate,
# recording). A 15-minute SmolLM2 pilot's runs, two at a time on this 2-core CPU, spent 34-46 s so, of which
# 21-34 s measured the tuned model's inference cost, which pilot runs now skip (a serving cost comes from the
# recommender); 9-21 s is left inside the worker, plus the interpreter's imports before its clock starts.
STARTUP_SECONDS = {"cpu": 25.0, "cuda": 25.0}  # cuda: assumed, not yet measured
MIN_STEPS, EPOCHS = 8, 3
# A CPU step of a 135M model costs ~1 TFLOP at batch 8 x 200 tokens (over a minute on a loaded 2-core machine):
# CPU pilots take batch 4 and inputs cut at CPU_MAX_LENGTH tokens so that a 15-minute pilot fits two candidates.
BATCH = {"cpu": 4, "cuda": 16}
CPU_MAX_LENGTH = 128
DEFAULT_CANDIDATES = 3
PLAN_VERSION = 1


@dataclass
class PilotCandidate:
    method: str
    hyperparameters: dict[str, Any]  # the recommender's suggestion (learning_rate: the sweep's x1)
    step_seconds: float  # one optimizer step of BATCH on the pilot's device (estimator)
    run_seconds: float = 0.0  # one pilot run, as planned
    full_run_gpu_hours: float | None = None  # the full training on the target GPU (recommender)
    prior: tuple[float, float] | None = None  # predicted quality vs full FT and its standard error
    full_run: dict[str, Any] = field(default_factory=dict)  # the recommender's settings for the full run (export)


@dataclass
class PilotPlan:
    version: int
    request: dict[str, Any]  # what the plan was made for: a rerun with other inputs is another plan
    candidates: list[PilotCandidate]
    steps: int
    batch_size: int
    seconds: float
    budget_seconds: float
    notes: list[str] = field(default_factory=list)
    jobs: int = 1  # runs at a time

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1, default=str))

    @classmethod
    def load(cls, path: Path) -> PilotPlan | None:
        try:
            raw = json.loads(path.read_text())
            raw["candidates"] = [PilotCandidate(**{**c, "prior": tuple(c["prior"]) if c.get("prior") else None})
                                 for c in raw["candidates"]]
            plan = cls(**raw)
        except (OSError, ValueError, TypeError, KeyError):
            return None
        return plan if plan.version == PLAN_VERSION else None

    def describe(self) -> str:
        names = ", ".join(c.method for c in self.candidates)
        return (f"{len(self.candidates)} candidates ({names}) x learning rates x1/3, x1, x3 of the suggested one "
                f"(one more where an edge wins), judged on the validation rows: {self.steps} steps of batch "
                f"{self.batch_size} per run, {self.jobs} run(s) at a time; predicted {self.seconds / 60:.1f} min of "
                f"the {self.budget_seconds / 60:.0f} min budget")


def run_seconds(step_seconds: float, steps: int, scored_rows: int, device: str, generation: bool,
                target_tokens: int) -> float:
    """One pilot run: start-up, training, and scoring the `scored_rows` (a forward pass is about a third of
    a training step; generation decodes `target_tokens` of them per batch)."""
    batch = BATCH[device]
    forward = step_seconds / 3
    evaluation = math.ceil(scored_rows / batch) * forward * (target_tokens if generation else 1)
    return STARTUP_SECONDS[device] + steps * step_seconds + evaluation


def concurrent_runs(device: str) -> int:
    """Runs at a time: one per CPU core (each run trains on one thread, the harness's default), one on a GPU."""
    import os

    if device != "cpu":
        return 1
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def fit_budget(candidates: list[PilotCandidate], budget: float, train_rows: int, scored_rows: int, device: str,
               generation: bool, target_tokens: int, most: int,
               jobs: int = 1, spent: float = 0.0) -> tuple[list[PilotCandidate], int, float]:
    """(the candidates kept, steps per run, predicted wall seconds with `jobs` runs at a time), most candidates
    first, at least two."""
    batch = BATCH[device]
    want = max(MIN_STEPS, math.ceil(EPOCHS * train_rows / batch))

    def total(chosen: list[PilotCandidate], steps: int) -> float:
        return scheduled_seconds([run_seconds(c.step_seconds, steps, scored_rows, device, generation, target_tokens)
                                  for c in chosen], jobs)

    for k in range(min(most, len(candidates)), 1, -1):  # every candidate it can at full length
        if total(candidates[:k], want) <= BUDGET_SHARE * budget:
            return candidates[:k], want, total(candidates[:k], want)
    two = candidates[:2]  # else two, at the most steps that fit (wall time grows with the steps of every run)
    fitting = bisect.bisect_right(range(MIN_STEPS, want), BUDGET_SHARE * budget, key=lambda n: total(two, n))
    if fitting and min(most, len(candidates)) >= 2:
        steps = MIN_STEPS + fitting - 1
        return two, steps, total(two, steps)
    need = total(two, MIN_STEPS) / BUDGET_SHARE
    before = (f" after the {spent / 60:.1f} min spent profiling the data, asking the recommender and calibrating"
              if spent else "")
    raise UserError(f"--budget {(budget + spent) / 60:.0f} min is too small for two candidates ({two[0].method}, "
                    f"{two[1].method if len(two) > 1 else '-'}) at {MIN_STEPS} steps: they need about "
                    f"{math.ceil(need / 60)} min on this {device}{before} (a rerun with a larger --budget reuses "
                    "that work)")


def scheduled_seconds(run_seconds: list[float], jobs: int) -> float:
    """Wall seconds of the pilot's runs as the harness schedules them, a run of candidate i taking
    `run_seconds[i]`: first every candidate's sweep (`GRID_RUNS` runs each, in candidate order, each run to the
    first free of `jobs` workers), then, once the whole sweep is recorded, one extension per candidate the same
    way. A phase ends with its last run, so one worker can idle while another finishes: the 15-minute SmolLM2
    pilot's runs took 12.9 min where their summed work over two workers predicted 11.3."""
    def phase(durations: list[float]) -> float:
        free = [0.0] * max(1, jobs)
        for seconds in durations:
            free[free.index(min(free))] += seconds
        return max(free)

    sweep = [seconds for seconds in run_seconds for _ in range(GRID_RUNS)]
    return phase(sweep) + (RUNS_PER_CANDIDATE - GRID_RUNS) * phase(list(run_seconds))


def order_candidates(ranking: list[dict[str, Any]], everything: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The recommender's order, full fine-tuning moved into the first three when it fits (the comparison a
    team needs), each method once."""
    ranked = [c for c in ranking if c["fits"]]
    full = next((c for c in everything if c["method"] == "full" and c["fits"]), None)
    if full is not None and full not in ranked[:3]:
        ranked = [c for c in ranked if c["method"] != "full"]
        ranked.insert(min(2, len(ranked)), full)
    once: dict[str, dict[str, Any]] = {}
    for c in ranked:
        once.setdefault(c["method"], c)
    return list(once.values())
