"""Per-method learning-rate selection: `peftbench run suite=NAME tune=lr [tune.grid=[0.33,1,3]]`.

The learning rate decides more than the method (peft's own comparison: one method moves from 0.15% to 41.6%
after tuning), so comparing methods each at one default rate compares rates as much as methods. Protocol:

1. Sweep: for each (task, method), one run per grid factor at `factor x` the method's rate (its default
   times the suite's `lr_multiplier`, or `train.learning_rate`), on the first seed. A sweep run trains on
   the training rows outside a validation split and is scored on that split — carved from the training
   data, never the eval split: the rows whose stable content hash sorts last, `tune.fraction` of them
   (default 20%), at least `tune.min_rows` (16). Recorded with `role: "sweep"`.
2. Extend: where the best factor (see 3) is the grid's edge and strictly beats its neighbour, the optimum may lie
   beyond it, so the sweep continues geometrically past that edge (x3 -> x9 -> x27, or x0.33 -> x0.11 ...),
   at most `MAX_EXTENSIONS` steps, until the edge no longer wins.
3. Select: the factor with the best primary metric (the task's first declared metric) on the validation
   split; a tie goes to the lower final training loss (rates stuck at the majority class tie on accuracy,
   not on how much they learned), then to the factor nearest the default. Failed or skipped sweep runs do
   not compete.
4. Run the selected rate on every seed, on the full training split, scored on the eval split as any run:
   `role: "selected"`, `selected_from: [the sweep's run ids]`, `tune: {factor, grid, scores, ...}`.

Every phase resumes: run ids are derived from the specs, so a rerun skips what is recorded. A rerun whose
extension moves the selection records new selected runs; they supersede the earlier selection of the same
(task, method configuration, seed) in every table (`results.latest_records`). Tables, reports
and the recommender read selected (and plain) runs; sweep runs only on request
(`peftbench results --show-sweep`, `latest_records(..., include_sweep=True)`).

This module plans the sweep and selects; `runs.runner.run_tuned` runs the phases (so that the worker, which
carves a sweep run's data here, does not import the runner that starts it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from peftbench.errors import UserError, shown
from peftbench.runs.spec import RunSpec

if TYPE_CHECKING:
    from peftbench.record import RunRecord

DEFAULT_GRID = (0.33, 1.0, 3.0)
VALIDATION_FRACTION = 0.2
MIN_VALIDATION_ROWS = 16
TUNABLE = ("lr",)
MAX_EXTENSIONS = 2  # grid steps past an edge that keeps winning (x3 grid: up to x27 or x1/27 the default)


@dataclass(frozen=True)
class TuneConfig:
    """What `tune=lr` searches and how the validation split is carved."""

    grid: tuple[float, ...] = DEFAULT_GRID
    fraction: float = VALIDATION_FRACTION
    min_rows: int = MIN_VALIDATION_ROWS
    # Grid steps past an edge that keeps winning. Not part of `describe()` (nor of any run's identity): it
    # bounds how many runs a sweep may add, not what a run is; a time-boxed pilot allows one.
    extensions: int = MAX_EXTENSIONS
    # Whether the selected rate is then run on every seed on the full training split, scored on the eval split
    # (step 4). A time-boxed pilot judges on the sweep's validation scores instead and leaves the eval split
    # untouched for the full run; a later `run ... tune=lr` of the same suite adds the selected runs, reusing the
    # sweep. Not part of any run's identity either.
    confirm: bool = True

    def describe(self) -> dict[str, Any]:
        return {"param": "learning_rate", "grid": list(self.grid),
                "validation": {"fraction": self.fraction, "min_rows": self.min_rows}}


def parse_tune(what: Any, options: dict[str, Any]) -> TuneConfig | None:
    """`tune=lr` plus `tune.grid=[...]`, `tune.fraction=F`, `tune.min_rows=N`; None when not tuning."""
    if what is None:
        if options:
            raise UserError(f"tune.{next(iter(options))} needs tune=lr")
        return None
    if what not in TUNABLE:
        raise UserError(f"tune must be one of {', '.join(TUNABLE)} (per-method learning-rate selection), "
                        f"got {shown(what)}")
    unknown = set(options) - {"grid", "fraction", "min_rows"}
    if unknown:
        raise UserError(f"unknown tune keys {sorted(unknown)} (valid: tune.grid, tune.fraction, tune.min_rows)")
    grid = options.get("grid", list(DEFAULT_GRID))
    if not isinstance(grid, list) or not grid or not all(_factor(g) for g in grid):
        raise UserError(f"tune.grid must be a list of positive learning-rate factors, e.g. [0.33,1,3]; "
                        f"got {shown(grid)}")
    if len(set(grid)) != len(grid):
        raise UserError(f"tune.grid has repeated factors: {shown(grid)}")
    fraction = options.get("fraction", VALIDATION_FRACTION)
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 < fraction < 1:
        raise UserError(f"tune.fraction must be a number between 0 and 1 (exclusive), got {shown(fraction)}")
    min_rows = options.get("min_rows", MIN_VALIDATION_ROWS)
    if not isinstance(min_rows, int) or isinstance(min_rows, bool) or min_rows < 1:
        raise UserError(f"tune.min_rows must be a positive integer, got {shown(min_rows)}")
    return TuneConfig(tuple(float(g) for g in grid), float(fraction), min_rows)


def _factor(value: Any) -> bool:
    """A positive number a float can hold (inf, nan and ints past the float range are no factor)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= sys.float_info.max


# --- the validation split ------------------------------------------------------------------------------

def _row_hash(row: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()


def validation_size(train_rows: int, fraction: float = VALIDATION_FRACTION, min_rows: int = MIN_VALIDATION_ROWS) -> int:
    """How many of `train_rows` training rows the validation split holds."""
    return max(min_rows, math.ceil(fraction * train_rows))


def validation_indices(train: Any, eval_rows: Any, fraction: float, min_rows: int) -> list[int]:
    """Indices of the training rows held out for selection: the last `fraction` (at least `min_rows`) in
    order of their content hash — stable across runs, machines and row order. Rows that also appear in the
    eval split are never chosen, so selection never sees an eval row."""
    n = len(train)
    size = validation_size(n, fraction, min_rows)
    if n - size < min_rows:
        raise UserError(f"tune: {n} training rows are too few to carve a {size}-row validation split and keep "
                        f"{min_rows} to train on (lower tune.min_rows, or use more training rows)")
    in_eval = {_row_hash(r) for r in eval_rows}
    hashed = sorted((_row_hash(row), i) for i, row in enumerate(train))
    candidates = [i for h, i in hashed if h not in in_eval]
    return sorted(candidates[-size:])


def sweep_data(data: Any, tune: dict[str, Any]) -> Any:
    """A sweep run's data: train on the training rows outside the validation split, score on that split."""
    from peftbench.data import TaskData, fingerprint_rows

    validation = tune["validation"]
    held = validation_indices(data.train, data.eval, validation["fraction"], validation["min_rows"])
    held_set = set(held)
    rest = [i for i in range(len(data.train)) if i not in held_set]
    train, val = data.train.select(rest), data.train.select(held)
    return TaskData(train, val, fingerprint_rows(train, val))


# --- the two phases ----------------------------------------------------------------------------------

def _with_rate(spec: RunSpec, factor: float, tune: dict[str, Any], seed: int) -> RunSpec:
    base = spec.train.learning_rate
    assert base is not None  # a planned spec's rate is resolved (runs.plan: the method's default if unset)
    lr = float(f"{base * factor:.6g}")  # 3 x 4e-4 is 0.0012, not 0.0012000000000000001
    return spec.with_learning_rate(lr, seed=seed, tune={**tune, "factor": factor, "base_learning_rate": base})


def sweep_specs(specs: list[RunSpec], config: TuneConfig) -> dict[tuple[str, str], list[RunSpec]]:
    """(task, method) -> one sweep spec per grid factor, on the first seed of the plan."""
    first_seed = specs[0].seed if specs else 0
    out: dict[tuple[str, str], list[RunSpec]] = {}
    for spec in specs:
        key = (spec.task.name, spec.method)
        if key in out:
            continue
        tune = {"role": "sweep", **config.describe()}
        out[key] = [_with_rate(spec, factor, tune, first_seed) for factor in config.grid]
    return out


def extension_specs(sweep: list[RunSpec], records: dict[str, RunRecord],
                    most: int = MAX_EXTENSIONS) -> list[RunSpec]:
    """The next sweep run past the grid's edge when that edge won (strictly, over its neighbour), or [] (also
    once `most` runs were added past that edge)."""
    merits = _merits(sweep, records)
    best = _best(merits)
    factors = sorted(merits)
    if best is None or len(factors) < 2 or best not in (factors[0], factors[-1]):
        return []
    edge, neighbour = (factors[-1], factors[-2]) if best == factors[-1] else (factors[0], factors[1])
    edge_merit, neighbour_merit = merits[edge], merits[neighbour]
    assert edge_merit is not None  # the edge is the best factor, which has a merit
    if neighbour_merit is not None and edge_merit <= neighbour_merit:
        return []
    outward = [s for s in sweep if _tune(s).get("extension") and (_tune(s)["factor"] > 1) == (edge > 1)]
    if len(outward) >= most:
        return []
    past = next(s for s in sweep if _tune(s)["factor"] == edge)
    factor = float(f"{edge * edge / neighbour:.6g}")  # the grid's ratio at that end, continued
    tune = {k: v for k, v in _tune(past).items() if k not in ("factor", "base_learning_rate")}
    base_train = dataclasses.replace(past.train, learning_rate=_tune(past)["base_learning_rate"])
    base = dataclasses.replace(past, train=base_train)
    return [_with_rate(base, factor, {**tune, "extension": True}, past.seed)]


def select_factor(sweep: list[RunSpec], records: dict[str, RunRecord]) -> tuple[float | None, dict[str, Any]]:
    """The best grid factor by the validation score of the primary metric; None if no sweep run succeeded.
    Also every factor's score (None where the run failed or was skipped)."""
    merits = _merits(sweep, records)
    return _best(merits), {f"{f:g}": (m[0] if m else None) for f, m in merits.items()}


def _merits(sweep: list[RunSpec], records: dict[str, RunRecord]) -> dict[float, tuple[float, float] | None]:
    return {_tune(spec)["factor"]: _merit(spec, records) for spec in sweep}


def _tune(spec: RunSpec) -> dict[str, Any]:
    """A sweep spec's `tune` (`sweep_specs` and `extension_specs` always set it)."""
    assert spec.tune is not None
    return spec.tune


def _best(merits: dict[float, tuple[float, float] | None]) -> float | None:
    """Best score; on a tie the rate that learned most (lower final training loss: several rates stuck at the
    majority class tie on accuracy but not on loss), then the factor nearest the default (x1), then the
    smaller rate. None when no sweep run succeeded."""
    valid = [f for f, m in merits.items() if m is not None]
    if not valid:
        return None
    return max(valid, key=lambda f: (merits[f], -abs(math.log(f)), -f))


def _merit(spec: RunSpec, records: dict[str, RunRecord]) -> tuple[float, float] | None:
    """(validation score, -final training loss) of an ok sweep run; None otherwise. A NaN loss ranks last."""
    return record_merit(records.get(spec.run_id), spec.task.metrics[0] if spec.task.metrics else None)


def record_merit(record: RunRecord | None, metric: str | None) -> tuple[float, float] | None:
    """What selection ranks a sweep run by: (its `metric` on the validation split, -final training loss); None
    for a missing or failed run."""
    value = record.metric(metric) if record is not None and record.ok else None
    if record is None or value is None:
        return None
    loss = record.final_train_loss
    return float(value), -float(loss) if isinstance(loss, (int, float)) and math.isfinite(loss) else -math.inf


def best_sweep_record(sweep: list[RunRecord], metric: str | None) -> RunRecord | None:
    """The sweep run the selection picks among recorded sweep runs of one (task, method, seed), by the same rule
    as `select_factor`; None when none succeeded."""
    by_factor = {float(r.tune.get("factor", 1.0)): r for r in sweep if r.tune}
    factor = _best({f: record_merit(r, metric) for f, r in by_factor.items()})
    return None if factor is None else by_factor[factor]


def selected_specs(specs: list[RunSpec], sweeps: dict[tuple[str, str], list[RunSpec]],
                   records: dict[str, RunRecord], config: TuneConfig) -> list[RunSpec]:
    """Every seed of every (task, method) at its selected rate (x1 when no sweep run succeeded: the
    selected run then says so with `factor_reason`)."""
    out = []
    for spec in specs:
        sweep = sweeps[(spec.task.name, spec.method)]
        factor, scores = select_factor(sweep, records)
        tune = {"role": "selected", **config.describe(), "selected_from": [s.run_id for s in sweep],
                "scores": scores}
        if factor is None:
            factor, tune["factor_reason"] = 1.0, "no sweep run succeeded: the default rate"
        out.append(_with_rate(spec, factor, tune, spec.seed))
    return out


def check_split_sizes(plan: Any, config: TuneConfig) -> None:
    """Refuse, before anything runs, a task whose training rows are too few to carve the validation split."""
    from peftbench.data import load_task_data

    seen = set()
    for spec in plan.specs:
        if spec.task.name in seen:
            continue
        seen.add(spec.task.name)
        task = spec.task
        data = load_task_data(task, spec.scale)
        try:
            validation_indices(data.train, data.eval, config.fraction, config.min_rows)
        except UserError as exc:
            raise UserError(f"task '{task.name}': {exc}") from None
