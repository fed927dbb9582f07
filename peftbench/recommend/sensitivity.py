"""How much quality a method loses when its learning rate is off: learning-rate sweeps as evidence.

A practitioner runs the suggested setting once, or can afford a few runs. A method whose quality collapses at
a third or three times its best rate is worth less to them than its tuned score says. Two kinds of sweep say
how much:
- peftbench's own (`tune=lr`: every method on every reference task swept over x1/3, x1, x3 of its rate, and
  past an edge that wins), scored on a validation split;
- published ones: corpus rows of one comparison that differ only in the learning rate.
Each sweep gives, around its best rate r*, the loss at r*/3 and at 3 r* as a fraction of the comparison's
reference score (full FT's best, as everywhere in the recommender), never below zero.

What a tuning budget leaves of that loss (`expected_loss`): the suggested rate is taken to be, before any run,
as likely a factor of 3 too low or too high as right (a x1/3-x1-x3 grid's view of its own uncertainty; the
recommender's rates are medians of published choices that themselves spread over such factors). One run at
the suggested rate then loses the mean of (0, low, high); a second run, placed on the worse side, leaves a third
of the smaller loss; three runs cover the grid and lose nothing a grid step would find.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftbench.recommend.evidence import FALLBACK_METRIC, MIN_REFERENCE_SCORE, PRIMARY_METRIC

if TYPE_CHECKING:
    from peftbench.record import RunRecord

STEP = 3.0  # the factor a learning rate is "off" by: one step of the x1/3-x1-x3 grid
STEP_TOLERANCE = 0.35  # in log3 units: a sweep point at x2.5-x3.6 of the best rate counts as "x3"


@dataclass(frozen=True)
class Sweep:
    """One method's learning-rate sweep in one comparison (`low`/`high`: loss at r*/3 and 3 r*, fractions of
    the reference score; None where the sweep has no point there)."""

    source: str  # "own:<suite>" or a corpus source id
    comparison: str
    method: str
    best_rate: float
    low: float | None
    high: float | None
    rates: int
    log_params: float | None
    cite: str
    scores: tuple[tuple[float, float], ...] = ()  # (rate, score), as swept
    untuned_rate: float | None = None  # the rate a user runs without tuning (own sweeps: the method's default)
    kind: str = ""  # the comparison's task kind, architecture and data size, as evidence points carry them
    architecture: str = ""
    log_examples: float | None = None
    reference: float = 100.0  # the comparison's reference score the losses are fractions of

    def score_at(self, rate: float) -> float:
        """The swept score nearest `rate` (on a log scale)."""
        return min(self.scores, key=lambda rs: abs(math.log(rs[0] / rate)))[1]

    def loss_at(self, rate: float) -> float:
        """Quality lost by running at `rate` (the nearest swept one) instead of the best, as a fraction of the
        reference score."""
        best = max(score for _, score in self.scores)
        return max(0.0, (best - self.score_at(rate)) / max(self.reference, MIN_REFERENCE_SCORE))


@dataclass
class Sensitivity:
    """A method's learning-rate sensitivity at the query's model size (`at_scale`)."""

    method: str
    low: float  # loss at a third of the best rate
    high: float  # loss at three times the best rate
    sweeps: list[Sweep] = field(default_factory=list)  # nearest in model size first
    weight: float = 0.0  # effective sweeps at the query's size
    untuned: float | None = None  # loss at the rate a user runs without tuning (the suggested one), where known

    @property
    def sources(self) -> list[str]:
        return sorted({s.source for s in self.sweeps})

    def describe(self) -> str:
        own = sum(s.source.startswith("own:") for s in self.sweeps)
        published = len(self.sweeps) - own
        return (f"learning-rate sensitivity: {_pts(self.low)} at x1/3 and {_pts(self.high)} at x3 of its best rate, "
                f"of the reference score "
                f"({self.weight:.1f} effective sweeps at this model size of {len(self.sweeps)}: {own} from "
                f"peftbench's reference tasks, {published} published; shrunk toward all methods' pooled loss)")


def _log(x: Any) -> float | None:
    return math.log10(x) if isinstance(x, (int, float)) and x > 0 else None


def _pts(fraction: float) -> str:
    return f"-{100 * fraction:.1f}%"


def expected_loss(sens: Sensitivity | None, tuning_runs: int) -> float:
    """Expected quality lost to the learning rate with this many runs (module doc), as a fraction of the
    reference score; 0 without sweep evidence (nothing is known, and the evidence's interval already says so)."""
    if sens is None or tuning_runs >= 3:
        return 0.0
    one_run = sens.untuned if sens.untuned is not None else (sens.low + sens.high) / 3.0
    return one_run if tuning_runs <= 1 else min(one_run, min(sens.low, sens.high) / 3.0)


def _at(points: dict[float, float], rate: float) -> float | None:
    """The score at `rate` where the sweep has a point within STEP_TOLERANCE (log3) of it."""
    near = [(abs(math.log(r / rate, STEP)), s) for r, s in points.items()]
    close = [x for x in near if x[0] <= STEP_TOLERANCE]
    return min(close)[1] if close else None


def sweep_of(points: dict[float, float], reference: float, **where: Any) -> Sweep | None:
    """The losses around the best rate of one sweep (rate -> score), relative to `reference`."""
    if len(points) < 2:
        return None
    best_rate = max(points, key=lambda r: (points[r], -abs(math.log(r))))
    best = points[best_rate]
    ref = max(reference, MIN_REFERENCE_SCORE)
    low, high = _at(points, best_rate / STEP), _at(points, best_rate * STEP)
    if low is None and high is None:
        return None
    loss = lambda s: None if s is None else max(0.0, (best - s) / ref)  # noqa: E731
    return Sweep(best_rate=best_rate, low=loss(low), high=loss(high), rates=len(points),
                 scores=tuple(sorted(points.items())), reference=ref, **where)


def suggested_rates(points: list[Any]) -> Callable[[Sweep], float | None]:
    """The rate a user would run without tuning in a sweep's setting: an own sweep's recorded default; for a
    published one, the rate peftbench suggests at that model size from these points (`hparams.learning_rate`)."""
    from functools import cache

    from peftbench.recommend.hparams import learning_rate

    @cache
    def at(method: str, log_params: float) -> float:
        return learning_rate("lora" if method == "qlora" else method, 10 ** log_params, points)[0]

    def suggested(sweep: Sweep) -> float | None:
        if sweep.source.startswith("own:"):
            return sweep.untuned_rate
        return at(sweep.method, round(sweep.log_params or 9.0, 2))

    return suggested


# ---- peftbench's own sweeps ------------------------------------------------------------------------------
def own_sweeps(records: Iterable[RunRecord], informative: Callable[[str, str], bool] | None = None) -> list[Sweep]:
    """One sweep per (suite, task, model, method) from the sweep runs (`role: sweep`, first seed), scored by
    the task's primary metric on its validation split; relative to full FT's best validation score there.
    `informative(suite, task)`: whether the task's table can tell methods apart (the rest are not evidence)."""
    by_key: dict[tuple, dict[float, float]] = defaultdict(dict)
    params: dict[tuple, int] = {}
    default_rate: dict[tuple, float] = {}
    facts: dict[tuple, tuple] = {}
    for rec in records:
        if not rec.is_sweep or not rec.ok:
            continue
        kind = rec.task_kind or ""  # a record without a kind names no metric below, so it is skipped
        metrics = rec.metrics
        score = metrics.get(PRIMARY_METRIC.get(kind, ""), metrics.get(FALLBACK_METRIC.get(kind, "")))
        rate = rec.hyperparameters.get("learning_rate")
        if not isinstance(score, (int, float)) or math.isnan(score) or not isinstance(rate, (int, float)) or rate <= 0:
            continue
        key = (rec.suite, rec.task, rec.model, rec.method)
        by_key[key][float(rate)] = float(score)
        params[key] = int(rec.total_params or 0)
        facts[key] = (kind, rec.architecture or "", rec.train_examples)
        base = (rec.tune or {}).get("base_learning_rate")
        if isinstance(base, (int, float)) and base > 0:
            default_rate[key] = float(base)
    reference = {k[:3]: max(v.values()) for k, v in by_key.items() if k[3] == "full"}
    out = []
    for key, points in sorted(by_key.items(), key=lambda kv: tuple(map(str, kv[0]))):
        suite, task, _, method = key
        if key[:3] not in reference or (informative is not None and not informative(suite, task)):
            continue
        sweep = sweep_of(points, reference[key[:3]], source=f"own:{suite}", comparison=f"own|{suite}/{task}",
                         method=method, log_params=math.log10(params[key]) if params[key] else None,
                         cite=f"{method} on {suite}/{task}: {len(points)} rates swept (peftbench reference run)",
                         untuned_rate=default_rate.get(key), kind=facts[key][0], architecture=facts[key][1],
                         log_examples=_log(facts[key][2]))
        if sweep is not None:
            out.append(sweep)
    return out


def own_sensitivity_sweeps(paths: list[Path]) -> list[Sweep]:
    """The sweeps of these runs files, on the tasks that can tell methods apart (as for every own evidence)."""
    from peftbench.informativeness import task_informativeness
    from peftbench.recommend.points import NOT_EVIDENCE_SUITES
    from peftbench.results import latest_records

    records = latest_records(paths, include_sweep=True)
    verdicts = task_informativeness([r for r in records if not r.is_sweep])

    def informative(suite: str, task: str) -> bool:
        verdict = verdicts.get(f"{suite}/{task}") or verdicts.get(task)
        return suite not in NOT_EVIDENCE_SUITES and (verdict is None or verdict.informative)

    return own_sweeps(records, informative)


# ---- published sweeps ------------------------------------------------------------------------------------
def published_sweeps(rows: Iterable[Any]) -> list[Sweep]:
    """Corpus rows of one table block, method and configuration that differ only in `learning_rate`."""
    groups: dict[tuple, dict[float, float]] = defaultdict(dict)
    meta: dict[tuple, Any] = {}
    for row in rows:
        if not row.method or not row.full_ft_score:
            continue
        hps = dict(row.hyperparameters or {})
        rate = hps.pop("learning_rate", None)
        if not isinstance(rate, (int, float)) or rate <= 0:
            continue
        key = (row.source_id, row.locator, row.model, row.task, row.train_examples, row.training_length,
               row.metric, row.method, json.dumps(hps, sort_keys=True, default=str))
        groups[key][float(rate)] = float(row.score)
        meta[key] = row
    # A benchmark average swept beside its own per-task sweeps is the same runs again: counted once, per task.
    per_task = {k[:6] + k[7:] for k in groups if not k[6].endswith("_avg")}
    out = []
    for key, points in groups.items():
        if key[6].endswith("_avg") and key[:6] + key[7:] in per_task:
            continue
        row = meta[key]
        sweep = sweep_of(points, row.full_ft_score, source=row.source_id, comparison="|".join(map(str, key[:7])),
                         method=row.method, log_params=math.log10(row.total_params) if row.total_params else None,
                         cite=f"{row.method_published} on {row.model}, {row.task}: {len(points)} rates "
                              f"({row.citation}, {row.locator})", kind=row.task_kind, architecture=row.architecture,
                         log_examples=_log(row.train_examples))
        if sweep is not None:
            out.append(sweep)
    return out


SENSITIVITY_PRIOR_WEIGHT = 1.0  # the pooled sensitivity of all methods counts as one sweep at the query


def at_scale(sweeps: Iterable[Sweep], log_params: float | None,
             suggested: Callable[[Sweep], float | None] | None = None) -> dict[str, Sensitivity]:
    """method -> its losses at this model size: each sweep weighted by the recommender's kernel on model size
    (`regime.BANDWIDTH`), shrunk toward every method's pooled loss with weight `SENSITIVITY_PRIOR_WEIGHT`.
    Sweeps on 135M CPU models barely move an answer for a 7B model (weight ~0.003 each at 1.7 decades), so there the
    published sweeps decide, and where none is near, every method carries the same pooled loss: no method is
    singled out as fragile on evidence from another scale. `suggested(sweep)`: the rate a user would run
    without tuning in that sweep's setting (own sweeps: their recorded default; published ones: the rate
    peftbench suggests for that model size), for the one-run loss `Sensitivity.untuned`."""
    from peftbench.recommend.regime import BANDWIDTH

    sweeps = list(sweeps)
    if not sweeps:
        return {}

    def weight(s: Sweep) -> float:
        if log_params is None or s.log_params is None:
            return 1.0
        return math.exp(-0.5 * ((s.log_params - log_params) / BANDWIDTH["params"]) ** 2)

    def untuned(s: Sweep) -> float | None:
        rate = suggested(s) if suggested is not None else s.untuned_rate
        return None if rate is None else s.loss_at(rate)

    values = {"low": lambda s: s.low, "high": lambda s: s.high, "untuned": untuned}

    def side(group: list[Sweep], what: str, prior: float | None) -> float | None:
        pairs = [(weight(s), v) for s in group if (v := values[what](s)) is not None]
        if prior is None or not pairs:
            return prior
        total = sum(w for w, _ in pairs)
        return (sum(w * v for w, v in pairs) + SENSITIVITY_PRIOR_WEIGHT * prior) / (total + SENSITIVITY_PRIOR_WEIGHT)

    def pooled_at_scale(get: Callable[[Sweep], float | None]) -> float | None:
        """All methods' loss at this size (kernel-weighted), so that a method without sweeps of its own is held
        to what sweeps near this size show, not to another scale's (one prior sweep's weight of the rest)."""
        seen = [(weight(s), v) for s in sweeps if (v := get(s)) is not None]
        if not seen:
            return None
        plain = statistics.mean(v for _, v in seen)
        total = sum(w for w, _ in seen)
        return (sum(w * v for w, v in seen) + SENSITIVITY_PRIOR_WEIGHT * plain) / (total + SENSITIVITY_PRIOR_WEIGHT)

    pooled = {what: pooled_at_scale(get) for what, get in values.items()}
    by_method: dict[str, list[Sweep]] = defaultdict(list)
    for s in sweeps:
        by_method[s.method].append(s)
    return {method: Sensitivity(method, side(group, "low", pooled["low"]) or 0.0,
                                side(group, "high", pooled["high"]) or 0.0,
                                sorted(group, key=lambda s: -weight(s)), sum(weight(s) for s in group),
                                side(group, "untuned", pooled["untuned"]))
            for method, group in by_method.items()}


def cached_sweeps(paths: list[Path]) -> list[Sweep]:
    """Own sweeps of these runs files plus the corpus's published sweeps, through the recommender's JSON cache
    (keyed by what the recommender means, the corpus files' bytes and the runs files' bytes): reading every sweep
    run and validating the corpus cost seconds, reading the cached sweeps milliseconds."""
    import dataclasses

    from peftbench.recommend.corpus import corpus_digest, load_corpus
    from peftbench.recommend.evidence import results_hash
    from peftbench.recommend.store import meaning_key, read_json, write_json

    key = f"{meaning_key('recommender')}:{corpus_digest()}:{results_hash(paths)}"
    cached = read_json("sweeps.json").get(key)
    if cached is not None:
        return [Sweep(**{**s, "scores": tuple(tuple(x) for x in s["scores"])}) for s in cached]
    sweeps = own_sensitivity_sweeps(paths) + published_sweeps(load_corpus())
    write_json("sweeps.json", {key: [dataclasses.asdict(s) for s in sweeps]})
    return sweeps
