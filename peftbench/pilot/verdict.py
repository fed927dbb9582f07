"""The pilot's decision: the candidates' measured validation scores, with their noise, combined with the
recommender's prior, decided by the recommender's own rule (`recommend.decision`).

Measured: each candidate's sweep run at the learning rate the harness's selection picks (`runs.tuning`), scored
on the validation rows carved from the training split. The pilot runs no retraining at the selected rate: on a
small budget that run cost a fifth of the pilot, and the test rows stay unseen for the full run. A best-of-the-
sweep score is optimistic, by about as much for every candidate (each had the same number of rates), which the
answer says. Every run records its score per row (`eval_rows`), and every sweep run of a task is scored on the
same validation rows, so a difference between two candidates is bootstrapped over the same rows (paired: a hard
row is hard for both). Where a candidate also has a selected run (`peftbench run ... tune=lr` on the pilot's
suite afterwards), the verdict reads those: trained on every training row, scored on the test rows.
Prior: the recommender's predicted quality relative to full FT with its standard error. Both become differences
to the best measured candidate, as fractions of its score, and are combined by precision (inverse variance): a
pilot on a few dozen rows moves the prior a little, one on hundreds of rows decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from peftbench.recommend.decision import VALUE_MARGIN, Decision, Option, decide
from peftbench.recommend.regime import Z
from peftbench.runs.tuning import best_sweep_record

if TYPE_CHECKING:
    from peftbench.record import RunRecord

BOOTSTRAP = 2000
MIN_SCALE = 5.0  # a score floor for relative differences (a model that learned nothing is no scale)


@dataclass
class Measured:
    method: str
    score: float  # mean score over the rows (the primary metric, 0-100)
    rows: list[float]  # the score of each scored row
    learning_rate: float | None
    run_id: str
    baseline: float | None = None  # the best trivial predictor's score on the same rows (majority class, chance)
    rates_tried: int = 1  # sweep runs the score is the best of (1: a selected run, scored on rows no sweep saw)


@dataclass
class PilotVerdict:
    metric: str
    best_measured: str
    rows: int
    scored_on: str  # "validation" (the sweep's best runs) or "test" (selected runs)
    differences: dict[str, tuple[float, float, float]]  # method -> measured (diff, low, high) vs best, in points
    posterior: dict[str, tuple[float, float]]  # method -> combined (diff, se), fraction of the best's score
    decision: Decision | None
    measured: dict[str, Measured] = field(default_factory=dict)
    costs: dict[str, float | None] = field(default_factory=dict)  # full-run cost per candidate
    baseline: float | None = None  # the trivial predictor's score on the scored rows, where the task has one
    learned: bool = True  # some candidate beat that baseline by more than one scored row's share

    @property
    def separates(self) -> bool:
        """The measured best beats every other candidate outside the 80% bootstrap interval."""
        return all(high < 0 for m, (_, _, high) in self.differences.items() if m != self.best_measured)


def measured_runs(records: list[RunRecord], methods: list[str]) -> tuple[dict[str, Measured], str]:
    """Each candidate's measured run and the rows it was scored on: the selected runs on the test rows where every
    candidate has one, else each candidate's best sweep run on the validation rows (seed 0, the last records)."""
    selected: dict[str, RunRecord] = {}
    sweeps: dict[str, list[RunRecord]] = {}
    for rec in records:
        if rec.ok and rec.method in methods and (rec.eval_rows or {}).get("scores"):
            if rec.is_sweep:
                sweeps.setdefault(rec.method, []).append(rec)
            else:
                selected[rec.method] = rec
    if len(selected) >= 2 and set(selected) >= set(sweeps):
        return {m: _measured(r, 1) for m, r in selected.items()}, "test"
    out = {}
    for method, group in sweeps.items():
        best = best_sweep_record(group, (group[0].eval_rows or {}).get("metric"))
        if best is not None:
            out[method] = _measured(best, len(group))
    return out, "validation"


def _measured(rec: RunRecord, rates_tried: int) -> Measured:
    rows = [float(x) for x in (rec.eval_rows or {})["scores"]]
    baselines = [float(v) for v in (rec.eval_baselines or {}).values() if isinstance(v, (int, float))]
    return Measured(rec.method, float(np.mean(rows)), rows, rec.hyperparameters.get("learning_rate"), rec.run_id,
                    max(baselines) if baselines else None, rates_tried)


def mean_interval(values: list[float], seed: int = 0) -> tuple[float, float, float]:
    """Mean of per-row values and its 80% percentile-bootstrap interval (scipy.stats.bootstrap, `BOOTSTRAP`
    resamples of the rows); a single row has no interval (its mean, twice)."""
    from scipy.stats import bootstrap

    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if len(data) < 2 or np.all(data == data[0]):
        return mean, mean, mean  # nothing to resample: every resample has this mean
    ci = bootstrap((data,), np.mean, n_resamples=BOOTSTRAP, confidence_level=0.8, method="percentile",
                   rng=np.random.default_rng(seed)).confidence_interval
    return mean, float(ci.low), float(ci.high)


def paired_interval(a: list[float], b: list[float], seed: int = 0) -> tuple[float, float, float]:
    """Mean of a - b over the same rows, and its 80% bootstrap interval: resampling rows, not runs, so a row
    both find hard counts once (paired)."""
    return mean_interval((np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).tolist(), seed)


def combine(measured: tuple[float, float], prior: tuple[float, float] | None) -> tuple[float, float]:
    """Inverse-variance combination of a measured and a prior (mean, se); the measurement alone without a prior."""
    if prior is None:
        return measured
    (m, sm), (p, sp) = measured, prior
    wm, wp = 1 / max(sm, 1e-6) ** 2, 1 / max(sp, 1e-6) ** 2
    return (m * wm + p * wp) / (wm + wp), math.sqrt(1 / (wm + wp))


def judge(records: list[RunRecord], priors: dict[str, tuple[float, float] | None],
          costs: dict[str, float | None], metric: str, margin: float = VALUE_MARGIN) -> PilotVerdict | None:
    """The verdict over the candidates' measured runs (`measured_runs`); None when fewer than two were measured.
    Where no candidate beat the trivial baseline (the majority class), the measurement says nothing about the
    methods and the decision is the prior's alone."""
    measured, scored_on = measured_runs(records, list(priors))
    if len(measured) < 2:
        return None
    best = max(measured.values(), key=lambda m: m.score)
    scale = max(best.score, MIN_SCALE)
    # One scored row's share of a 0-100 per-row score: the finest difference these rows can show. Two candidates
    # that agree on every row have a bootstrap interval of zero width, which is not certainty that they are
    # equal: no standard error is taken below it.
    resolution = 100.0 / len(best.rows)
    differences, posterior = {}, {}
    for method, run in measured.items():
        if len(run.rows) != len(best.rows):
            continue  # not the same rows: no paired comparison
        diff, low, high = paired_interval(run.rows, best.rows)
        differences[method] = (diff, low, high)
        se = max((high - low) / (2 * Z), resolution) / scale
        prior_diff = _prior_difference(priors.get(method), priors.get(best.method))
        posterior[method] = (0.0, 0.0) if method == best.method else combine((diff / scale, se), prior_diff)
    baselines = [m.baseline for m in measured.values() if m.baseline is not None]
    baseline = max(baselines) if baselines else None
    learned = baseline is None or best.score > baseline + resolution
    if learned:
        options = [Option(m, q, se, 0.0, costs.get(m)) for m, (q, se) in posterior.items()]
    else:
        options = [Option(m, prior[0], prior[1], 0.0, costs.get(m)) for m in measured
                   if (prior := priors.get(m)) is not None]
    return PilotVerdict(metric, best.method, len(best.rows), scored_on, differences, posterior,
                        decide(options, margin) if options else None, measured, costs, baseline, learned)


def _prior_difference(prior: tuple[float, float] | None,
                      best: tuple[float, float] | None) -> tuple[float, float] | None:
    if prior is None or best is None:
        return None
    return prior[0] - best[0], math.sqrt(prior[1] ** 2 + best[1] ** 2)


def rows_text(verdict: PilotVerdict) -> str:
    """The rows the scores come from, as a reader needs them named."""
    return f"{verdict.rows} {verdict.scored_on} rows"


def describe(verdict: PilotVerdict, unit: str) -> list[str]:
    """The verdict in the user's terms: the pick, whether the measured difference is real, and the others."""
    d = verdict.decision
    best = verdict.measured[verdict.best_measured]
    pick = d.pick.method if d else verdict.best_measured
    if not verdict.learned:
        lines = [f"pick: {pick} — the recommender's prior alone: no candidate beat the trivial baseline "
                 f"({verdict.baseline:.1f} {verdict.metric}, the majority class) on the {rows_text(verdict)} "
                 f"(best {best.score:.1f}), so the pilot measured nothing that tells these methods apart; a larger "
                 f"--budget trains each candidate longer"]
    else:
        lines = [f"pick: {pick}" + (f" — measured best ({best.score:.1f} {verdict.metric} on {rows_text(verdict)})"
                                    if pick == verdict.best_measured else
                                    f" — within noise of the measured best {verdict.best_measured} and cheaper")]
    for method, (diff, low, high) in sorted(verdict.differences.items(), key=lambda kv: -kv[1][0]):
        if method == verdict.best_measured:
            continue
        real = "a real gap" if high < 0 else "within noise"
        if not verdict.learned and high < 0:  # e.g. one candidate stuck at the majority class, the other below it
            real += ", but neither beat the majority class: not a difference between trained methods"
        post, se = verdict.posterior[method]
        lines.append(f"{method}: {diff:+.1f} {verdict.metric} points vs {verdict.best_measured} (80% paired "
                     f"bootstrap {low:+.1f} to {high:+.1f}): {real}; with the recommender's prior "
                     f"{100 * post:+.1f}% ± {100 * se:.1f}%")
    tried = sorted({m.rates_tried for m in verdict.measured.values()})
    if verdict.scored_on == "validation" and tried[-1] > 1:
        many = f"{tried[0]}" if len(tried) == 1 else f"{tried[0]}-{tried[-1]}"
        lines.append(f"scores: each candidate's best of {many} learning rates on the same validation rows (optimistic "
                     "by about as much for each); the test rows are left for the full run")
    if d is not None and d.best_value is not None:
        lines.append(f"best value: {d.best_value.method} (cheapest within {100 * d.margin:g}% of the best)")
    costs = {m: c for m, c in verdict.costs.items() if c is not None}
    if costs:
        lines.append("full-run cost (3 epochs of all rows): " + ", ".join(
            f"{m} {c:.3g} {unit}" for m, c in sorted(costs.items(), key=lambda kv: kv[1])))
    return lines
