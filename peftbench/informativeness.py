"""Can a task tell methods apart? The smallest difference it detects, and whether anything beats chance.

A task whose scores sit inside their own noise says nothing about which method is better: `mmlu_law`
trains 4 steps and every method scores 15.6-26% on 32 four-way questions (chance 25%, one standard error
~8 points). Tables mark such a task, the report names no best method on it, and the recommender ignores it
as evidence (`task_informativeness`; json records in, plain data out, no pandas).

Definitions (primary metric = the task's first metric, in points 0-100):

- eval noise, sigma_eval: for accuracy, the binomial standard error of one score on n eval items,
  100 * sqrt(p (1 - p) / n), p the mean accuracy over all runs; 0 for other metrics (no closed form: their
  seed spread carries the noise).
- seed noise, sigma_seed: the pooled within-method standard deviation over seeds (methods with >= 2 seeds).
- smallest detectable difference between two methods' means of k seeds (k = the median seed count):
  SDD = 1.96 * sqrt(2) * sqrt(sigma_eval^2 + sigma_seed^2 / k) — a two-sided 95% test of two independent
  means. With one seed and no closed form (generation) it is unknown and the task is not judged.
- the task separates methods when the best and worst method means differ by more than the SDD;
- it beats chance (accuracy tasks: 100 / classes or choices) and the majority class (the share of the
  most frequent eval label) when the best mean exceeds each by more than one SDD / sqrt(2) (one mean
  against a fixed value).
- informative = separates and (where known) beats chance and the majority class.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from peftbench.record import RunRecord

Z95 = 1.96
ACCURACY = "accuracy"


@dataclass(frozen=True)
class Informativeness:
    task: str
    metric: str
    methods: int
    seeds: int  # median seed count per method
    eval_examples: int | None
    eval_noise: float | None  # points
    seed_noise: float | None  # points
    detectable_difference: float | None  # SDD, points; None: cannot be judged (one seed, no closed form)
    best_method: str | None
    best: float | None
    spread: float | None  # best mean minus worst mean
    chance: float | None
    majority: float | None
    above_chance: bool | None
    above_majority: bool | None
    separates: bool | None
    informative: bool
    reason: str

    def tied_with_best(self, means: dict[str, float]) -> list[str]:
        """Methods whose mean is within the SDD of the best (the best first)."""
        if self.best is None:
            return []
        margin = self.detectable_difference or 0.0
        return sorted((m for m, v in means.items() if v >= self.best - margin), key=lambda m: -means[m])


def eval_baselines(prepared: Any) -> dict[str, float]:
    """Chance and majority-class accuracy (points) of a prepared classification or multiple-choice eval set;
    recorded by the run worker so that records carry them."""
    rows = prepared.eval_rows
    if not rows:
        return {}
    if "n_choices" in rows[0]:
        answers = [r["answer"] for r in rows]
        chance = 100.0 * statistics.fmean(1 / r["n_choices"] for r in rows)
    elif "labels" in rows[0] and prepared.num_labels:
        answers = [r["labels"] for r in rows]
        chance = 100.0 / prepared.num_labels
    else:
        return {}
    counts: dict[Any, int] = defaultdict(int)
    for a in answers:
        counts[a] += 1
    return {"chance": round(chance, 3), "majority": round(100.0 * max(counts.values()) / len(answers), 3)}


def _label(record: RunRecord, records: list[RunRecord]) -> str:
    """The method's name; with the configuration id where one task holds several configurations of it
    (`lora` and `lora r=16`), so that two configurations are never pooled as seeds of one."""
    others = {r.config_id for r in records if r.method == record.method}
    return record.method if len(others) == 1 else f"{record.method} [{record.config_id[:6]}]"


def _primary(records: list[RunRecord]) -> str | None:
    """Accuracy where there is one, else the kind's first default metric (records store metrics sorted by
    name, so their order says nothing); callers that know the suite pass its declared one instead."""
    from peftbench.suites import DEFAULT_METRICS

    present = {m for r in records for m in r.metrics}
    kind = str(records[0].task_kind) if records else ""
    for metric in (ACCURACY, *DEFAULT_METRICS.get(kind, ()), *sorted(present)):
        if metric in present:
            return metric
    return None


def _pooled_std(groups: Iterable[list[float]]) -> float | None:
    num = den = 0.0
    for values in groups:
        if len(values) > 1:
            num += statistics.variance(values) * (len(values) - 1)
            den += len(values) - 1
    return math.sqrt(num / den) if den else None


def assess(task: str, records: list[RunRecord], baselines: dict[str, Any] | None = None) -> Informativeness:
    """One task's informativeness from its ok records (one configuration per method label)."""
    metric = (baselines or {}).get("metric") or _primary(records)
    by_method: dict[str, list[float]] = defaultdict(list)
    for r in records:
        value = r.metrics.get(metric) if metric is not None else None
        if value is not None:
            by_method[_label(r, records)].append(float(value))
    if not by_method:
        return Informativeness(task, metric or "", 0, 0, None, None, None, None, None, None, None, None, None,
                               None, None, None, False, "no successful run")
    means = {m: statistics.fmean(v) for m, v in by_method.items()}
    seeds = int(statistics.median(len(v) for v in by_method.values()))
    sizes = [r.eval_examples for r in records if r.eval_examples]
    n = min(sizes) if sizes else None
    eval_noise = None
    if metric == ACCURACY and n:
        p = min(max(statistics.fmean(means.values()) / 100.0, 0.0), 1.0)
        eval_noise = 100.0 * math.sqrt(p * (1 - p) / n)
    seed_noise = _pooled_std(by_method.values())
    sdd = None
    if eval_noise is not None or seed_noise is not None:
        sdd = Z95 * math.sqrt(2.0) * math.sqrt((eval_noise or 0.0) ** 2 + (seed_noise or 0.0) ** 2 / max(seeds, 1))
    best_method = max(means, key=means.__getitem__)
    best, spread = means[best_method], max(means.values()) - min(means.values())
    base = baselines or {}
    chance = base.get("chance", _recorded(records, "chance"))
    majority = base.get("majority", _recorded(records, "majority"))
    one_mean = sdd / math.sqrt(2.0) if sdd is not None else None
    above_chance = None if chance is None or one_mean is None else best - chance > one_mean
    above_majority = None if majority is None or one_mean is None else best - majority > one_mean
    separates = None if sdd is None else (len(means) > 1 and spread > sdd)
    informative, reason = _verdict(separates, above_chance, above_majority, spread, sdd, len(means))
    assert metric is not None  # by_method holds values read under it
    return Informativeness(task, metric, len(means), seeds, n, _r(eval_noise), _r(seed_noise), _r(sdd), best_method,
                           _r(best), _r(spread), chance, majority, above_chance, above_majority, separates,
                           informative, reason)


def _verdict(separates: bool | None, above_chance: bool | None, above_majority: bool | None, spread: float,
             sdd: float | None, methods: int) -> tuple[bool, str]:
    if sdd is None:
        return True, "not judged: one seed and no closed-form eval noise for this metric"
    if methods < 2:
        return False, "one method: nothing to separate"
    if not separates:
        return False, f"no method separates: methods span {spread:.1f} points, the smallest detectable " \
                      f"difference is {sdd:.1f}"
    if above_chance is False:
        return False, "no method scores clearly above chance"
    if above_majority is False:
        return False, "no method scores clearly above the majority class"
    return True, f"methods span {spread:.1f} points > smallest detectable difference {sdd:.1f}"


def _recorded(records: list[RunRecord], key: str) -> float | None:
    values = [(r.eval_baselines or {}).get(key) for r in records]
    values = [v for v in values if v is not None]
    return values[0] if values else None


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def task_informativeness(records: Iterable[RunRecord],
                         baselines: dict[str, dict[str, Any]] | None = None) -> dict[str, Informativeness]:
    """Per task: can it tell methods apart? `records` are run records (any status; sweep runs ignored);
    `baselines` optionally gives {task: {"chance": pts, "majority": pts, "metric": primary}} where records do
    not carry them (`suite_baselines`).
    A method tuned on a task (`tune=lr`) is judged by its selected runs alone, its plain runs at the one default
    rate left out (`results.tuned_over_untuned`): an untuned rate would widen the span and make a task seem to
    separate methods. This is the one verdict the tables, reports, coverage and the recommender all show.
    Several configurations of one method on a task count apart (`lora [1a2b3c]`). Keys are task names;
    where two suites hold a task of one name, `suite/task`."""
    from peftbench.results import tuned_over_untuned

    by_task: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for r in tuned_over_untuned([r for r in records if not r.is_sweep]):
        if r.ok:
            by_task[(r.suite, r.task)].append(r)
    names = [task for _, task in by_task]
    out = {}
    for (suite, task), rows in sorted(by_task.items()):
        key = task if names.count(task) == 1 else f"{suite}/{task}"  # one task name in two suites: apart
        out[key] = assess(key, rows, (baselines or {}).get(task))
    return out


def suite_baselines(suite: str) -> dict[str, dict[str, Any]]:
    """Each task's declared primary metric and, for accuracy tasks, chance and majority-class scores from its
    data (for records written before runs recorded `eval_baselines`); {} where the suite cannot be read.
    Loads data, no model."""
    from peftbench.errors import UserError

    try:
        from peftbench.data import load_task_data
        from peftbench.suites import load_suite

        spec = load_suite(suite)
    except (UserError, ImportError):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for task in spec.tasks:
        out[task.name] = {"metric": task.metrics[0]} if task.metrics else {}
        if task.kind not in ("classification", "multiple_choice"):
            continue
        try:
            rows = load_task_data(task).eval
        except UserError:
            continue
        if task.kind == "classification":
            labels = [str(v) for v in rows[task.fields["label"]]]
            classes = len(task.labels) if task.labels else len(set(labels))
            chance, answers = 100.0 / max(classes, 1), labels
        else:
            choices = [len(c) for c in rows[task.fields["choices"]]]
            chance = 100.0 * statistics.fmean(1 / c for c in choices)
            answers = [str(a) for a in rows[task.fields["answer"]]]
        counts: dict[str, int] = defaultdict(int)
        for a in answers:
            counts[a] += 1
        out[task.name].update(chance=round(chance, 3), majority=round(100.0 * max(counts.values()) / len(answers), 3),
                              eval_examples=len(answers), kind=task.kind)
    return out
