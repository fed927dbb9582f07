"""The recommender's track record on what it never saw, against the rules people use today.

Three protocols, one machinery (`_score_folds`):
- leave-one-source-out over the published corpus: each source is held out in turn; every comparison of it
  (one table row block: the methods measured side by side on one model, task and setting) is predicted from
  the other sources plus peftbench's own reference runs, with the comparison's model size, task kind, data
  size and training length as the query. Nothing is tuned per fold: the kernel and prior are fixed constants.
- leave-one-task-out over the own reference runs: each benchmark task is held out (every suite holding the
  same data too) and predicted from the corpus plus the other tasks.
- single run: what a user gets who runs each method once at the rate they would use without tuning. Where a
  source swept learning rates, the held-out comparison is every swept method's score at its un-tuned rate
  (peftbench's own sweeps: the method's default rate; a published sweep: the swept rate nearest the one
  peftbench would suggest), each predicted from everything else as in the two protocols above.
Each pick is made as the answer makes it (`decision.decide`), for the budget the held-out figures were obtained
with: tuned (`TUNED` runs) for the first two, one run (`DEFAULT_TUNING_RUNS`, the answer's default) for the
third; ties to the cheapest (`relative_cost`).

The pick is scored by the held-out comparison's measured scores. Regret = best measured score - the pick's,
in the metric's points (scores printed as fractions are scaled to points). A method with several measured
configurations scores their mean, except where a strategy names a LoRA rank (nearest measured rank).
All methods are assumed to fit: the sources ran them.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from peftbench.method_declarations import PROXIES, RANKED
from peftbench.recommend.decision import decide, options_for
from peftbench.recommend.hparams import lora_rank
from peftbench.recommend.points import Point
from peftbench.recommend.regime import QualityEstimate, Regime, fit, lead_rule, promote_leader, separated
from peftbench.recommend.sensitivity import Sensitivity, Sweep, at_scale, suggested_rates

DEFAULT_TUNING_RUNS = 1  # what `recommend --tuning-runs` defaults to: the suggested setting, run once
# The sources' figures (and the reference runs' selected ones) are tuned: a sweep of at least three rates. A pick
# scored against them is asked the question they answer, with that budget.
TUNED = 3

WIDE = 8  # methods in a comparison for the "rho over wide comparisons" column


def size_rule_rank(train_examples: float) -> int:
    """axolotl PR #3691: r=8 under 1k examples, 16 under 10k, 32 under 100k, else 64."""
    return 8 if train_examples < 1_000 else 16 if train_examples < 10_000 else 32 if train_examples < 100_000 else 64


class _Comparison:
    """One held-out comparison: the measured score of each method (and of each LoRA rank)."""

    def __init__(self, points: list[Point]) -> None:
        self.points = points
        first = points[0]
        self.regime = Regime(first.kind, first.architecture, first.log_params, first.log_examples, first.log_steps)
        scale = 100.0 if max(abs(p.score) for p in points) <= 1.0 else 1.0
        by_method: dict[str, list[Point]] = defaultdict(list)
        for p in points:
            by_method[p.method].append(p)
        self.by_method = by_method
        self.scale = scale
        self.score = {m: scale * statistics.mean(p.score for p in ps) for m, ps in by_method.items()}
        self.examples = 10 ** first.log_examples if first.log_examples is not None else None

    def at_rank(self, method: str, rank: int) -> float | None:
        """Score of the measured configuration of a low-rank method nearest this rank (the method's mean if
        ranks are unknown): what a user following a rank advice would have got, not the average of a rank
        sweep (SVFT's table has DoRA at r=1, 4 and 16)."""
        ranks = [(p.hyperparameters.get("r"), p) for p in self.by_method.get(method, [])]
        ranked = [(r, p) for r, p in ranks if isinstance(r, (int, float)) and r > 0]
        if not ranked:
            return self.score.get(method)
        best = min(ranked, key=lambda rp: (abs(math.log2(rp[0] / rank)), rp[0]))[0]
        return self.scale * statistics.mean(p.score for r, p in ranked if r == best)


class Context:
    """What a strategy knows about one held-out comparison: the quality model fitted without it, the
    learning-rate sweeps without it at the comparison's model size, and each method's relative cost there."""

    def __init__(self, est: dict[str, QualityEstimate], sensitivity: dict[str, Sensitivity], costs: dict[str, float],
                 tuning_runs: int = DEFAULT_TUNING_RUNS) -> None:
        self.est, self.sensitivity, self.costs, self.tuning_runs = est, sensitivity, costs, tuning_runs


# A strategy returns (pick's score, predicted order score per method) for one comparison.
Strategy = Callable[[_Comparison, Context], tuple[float, dict[str, float]]]


def _fallback(cmp: _Comparison) -> float:
    """Where a rule's method was not measured: the expected score of a blind pick among those that were."""
    return statistics.mean(cmp.score.values())


def _scored(cmp: _Comparison, order: list[str]) -> tuple[float, dict[str, float]]:
    """The pick (first of `order`) scored as the answer gives it: a rank-based method at the rank for the data
    size; and the order as Spearman ranks it."""
    first = order[0]
    score = cmp.at_rank(first, lora_rank(cmp.examples)) if first in RANKED else cmp.score[first]
    return score if score is not None else cmp.score[first], _order_scores(order)


def _recommender(cmp: _Comparison, ctx: Context) -> tuple[float, dict[str, float]]:
    # Rank correlation is of the order shown to the user (risk-aware, the decision's pick first); ranking by
    # the posterior mean instead was measured worse (0.16 vs 0.30 leave-one-source-out).
    return _scored(cmp, decided_order(list(cmp.score), ctx))


def decided_order(methods: list[str], ctx: Context) -> list[str]:
    """The answer's order: the decision's pick first (`decision.decide`), the rest as `recommender_order`."""
    order = recommender_order(methods, ctx.est)
    decision = decide(options_for(methods, ctx.est, ctx.sensitivity, ctx.costs, ctx.tuning_runs, PROXIES))
    if decision is not None:
        order.remove(decision.pick.method)
        order.insert(0, decision.pick.method)
    return order


def _highest_predicted(cmp: _Comparison, ctx: Context) -> tuple[float, dict[str, float]]:
    """The rule before costs and learning-rate risk entered the pick: first place to the highest predicted
    quality among the methods that may lead. Kept as a row so the change is measured, not asserted."""
    return _scored(cmp, recommender_order(list(cmp.score), ctx.est))


def _cheapest_within_noise(cmp: _Comparison, ctx: Context) -> tuple[float, dict[str, float]]:
    """A baseline: the cheapest measured method the quality model cannot separate from its predicted best."""
    known = [m for m in cmp.score if PROXIES.get(m, m) in ctx.est and ctx.est[PROXIES.get(m, m)].evidenced]
    if not known:
        return _fallback(cmp), {m: 0.0 for m in cmp.score}
    est = lambda m: ctx.est[PROXIES.get(m, m)]  # noqa: E731
    best = max(known, key=lambda m: est(m).effect)
    ties = [m for m in known if m == best or not separated(est(best), est(m))]
    order = sorted(cmp.score, key=lambda m: (m not in ties, ctx.costs.get(m, float("inf"))))
    return _scored(cmp, order)


def recommender_order(methods: list[str], est: dict[str, QualityEstimate]) -> list[str]:
    """The engine's rule: methods by lower confidence bound; but first place only for a method that
    `QualityEstimate.may_lead` (at least MIN_NEAR_FOR_FIRST comparisons in the query's regime, from at least
    MIN_SOURCES_FOR_FIRST sources), so two glowing comparisons, or one paper's praise of its own method,
    never put a method ahead of one measured fifty times.

    Among the methods that may lead, first place goes to the highest predicted quality (posterior mean), not
    the highest lower bound: the evidence bar has already screened out thin evidence, and the lower bound
    would then only penalize a well-measured method whose sources disagree in size of effect (full FT vs
    LoRA at 7B: +0.05 with se 0.05). Measured leave-one-source-out: regret 1.95 -> 1.76, leave-one-task-out
    3.23 -> 2.51, rho unchanged (0.27 and 0.27 -> 0.29), measured with 15 sources.

    Below first place the order is the lower bound alone: a thin method's wide interval already places it
    low. Ranking every thin method below every well-evidenced one was measured worse (leave-one-task-out rho
    0.11 against 0.48), and so was ranking the methods with no evidence at this scale below the rest: it put
    prefix tuning, evidenced and predicted at 60% of LoRA, above (IA)3 and the adapter on T0-3B (measured
    with 22 sources: leave-one-source-out rho 0.35 -> 0.47, over >= 8 methods 0.60 -> 0.64; leave-one-task-out
    0.47 -> 0.50; regret unchanged)."""
    def key(m: str) -> float:
        e = est.get(m)
        return -(e.lcb if e else -9.0)
    def outright(m: str) -> bool:
        return bool(est.get(m) and est[m].may_lead)

    order = sorted(methods, key=key)
    eligible = lead_rule(order, outright, lambda m: bool(est.get(m) and est[m].may_lead_provisionally))
    # Where nobody has comparisons in this regime from two sources, the risk-aware best of those with enough
    # from one leads, provisionally (the answer says so), rather than no answer at all.
    return promote_leader(order, eligible, (lambda m: est[m].effect) if eligible is outright else None)


def _lora_rule(rank_of: Callable[[_Comparison], int]) -> Strategy:
    def pick(cmp: _Comparison, ctx: Context) -> tuple[float, dict[str, float]]:
        score = cmp.at_rank("lora", rank_of(cmp)) if "lora" in cmp.score else None
        return (score if score is not None else _fallback(cmp)), {m: float(m == "lora") for m in cmp.score}
    return pick


def _full_when_fits(cmp: _Comparison, ctx: Context) -> tuple[float, dict[str, float]]:
    if "full" in cmp.score:
        return cmp.score["full"], {m: float(m == "full") for m in cmp.score}
    return _lora_rule(lambda c: 16)(cmp, ctx)


PICKERS: dict[str, Strategy] = {
    "recommender": _recommender,
    "always LoRA r=16": _lora_rule(lambda c: 16),
    "rank by data size (LoRA)": _lora_rule(lambda c: size_rule_rank(c.examples or 5_000)),
    "full FT whenever it fits": _full_when_fits,
    "cheapest method within noise": _cheapest_within_noise,
    "highest predicted quality (previous rule)": _highest_predicted,  # PREVIOUS_RULE
}
PREVIOUS_RULE = "highest predicted quality (previous rule)"
BASELINES = tuple(name for name in PICKERS if name not in ("recommender", PREVIOUS_RULE))


def _spearman(pred: dict[str, float], truth: dict[str, float]) -> float | None:
    """Spearman's rho between the order shown and the measured scores (ties at their average rank); None where
    fewer than three methods or either side has no order at all."""
    keys = sorted(truth)
    predicted, measured = [pred[k] for k in keys], [truth[k] for k in keys]
    if len(keys) < 3 or len(set(predicted)) < 2 or len(set(measured)) < 2:
        return None
    from scipy.stats import spearmanr

    return float(spearmanr(predicted, measured).statistic)


def _posterior_mean(cmp: _Comparison, ctx: Context) -> tuple[float, dict[str, float]]:
    """Order by the fitted effect alone, no risk and no first-place rule: the in-sample ceiling's order."""
    est = ctx.est
    order = sorted(cmp.score, key=lambda m: -(est[m].effect if m in est else -9.0))
    return cmp.score[order[0]], _order_scores(order)


def _order_scores(order: list[str]) -> dict[str, float]:
    """An order (best first) as the descending scores `_spearman` ranks."""
    return {m: float(len(order) - i) for i, m in enumerate(order)}


# A fold: (name, training points, held-out points, training sweeps); held-out points with `score` as measured
# under the protocol (tuned, or at the un-tuned rate for the single-run protocol).
Fold = tuple[str, list[Point], list[Point], list[Sweep]]


def _score_folds(folds: list[Fold], strategies: dict[str, Strategy] | None = None,
                 tuning_runs: int = TUNED) -> list[dict[str, Any]]:
    """One row per (held-out comparison, strategy). `tuning_runs`: the budget the held-out scores were
    obtained with (a source's tuned figures: `TUNED`; the single-run protocol: one run)."""
    from peftbench.recommend.relative_cost import relative_costs

    rows = []
    for name, train, held, sweeps in folds:
        suggest_rate = suggested_rates(train)
        groups: dict[str, list[Point]] = defaultdict(list)
        for p in held:
            if not p.anchor:  # a quoted figure is its source's measurement, scored where that source is held out
                groups[p.comparison].append(p)
        for comp, pts in groups.items():
            if len({p.method for p in pts}) < 2:
                continue
            cmp = _Comparison(pts)
            ctx = Context(fit(train, cmp.regime), at_scale(sweeps, cmp.regime.log_params, suggest_rate),
                          relative_costs(list(cmp.score), cmp.regime.log_params), tuning_runs)
            best = max(cmp.score.values())
            top3 = sorted(cmp.score.values(), reverse=True)[:3]
            for strategy, picker in (strategies or PICKERS).items():
                score, order = picker(cmp, ctx)
                rows.append({"fold": name, "comparison": comp, "strategy": strategy, "methods": len(cmp.score),
                             "regret": best - score, "top1": score >= best - 1e-9,
                             "top3": score >= top3[-1] - 1e-9, "rho": _spearman(order, cmp.score)})
    return rows


def summarize(rows: list[dict[str, Any]], strategies: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    out = []
    for name in strategies or tuple(PICKERS):
        mine = [r for r in rows if r["strategy"] == name]
        if not mine:
            continue
        rhos = [r["rho"] for r in mine if r["rho"] is not None]
        # The bar is rho over comparisons of at least WIDE methods, where an order means something.
        wide = [r["rho"] for r in mine if r["rho"] is not None and r["methods"] >= WIDE]
        out.append({"strategy": name, "comparisons": len(mine),
                    "mean_regret": round(statistics.mean(r["regret"] for r in mine), 2),
                    "top1": round(sum(r["top1"] for r in mine) / len(mine), 3),
                    "top3": round(sum(r["top3"] for r in mine) / len(mine), 3),
                    "rho": round(statistics.mean(rhos), 3) if rhos else None, "rho_n": len(rhos),
                    "rho_wide": round(statistics.mean(wide), 3) if wide else None, "rho_wide_n": len(wide)})
    return out


def per_fold(rows: list[dict[str, Any]], strategy: str = "recommender") -> list[dict[str, Any]]:
    folds = sorted({r["fold"] for r in rows})
    return [{"fold": f, **{k: v for k, v in summarize([r for r in rows if r["fold"] == f])[i].items()
                            if k != "strategy"}, "strategy": s}
            for f in folds for i, s in enumerate(PICKERS) if s == strategy]


def per_task(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Leave-one-task-out, task by task: how many methods it compares, and the recommender's regret and rho
    beside the closest baseline's ("full FT whenever it fits"). A mean over ten tasks hides which task moved it."""
    out = []
    for fold in sorted({r["fold"] for r in rows}):
        mine = [r for r in rows if r["fold"] == fold]
        by = {name: summarize(mine, (name,))[0] for name in ("recommender", "full FT whenever it fits")}
        out.append({"task": fold, "methods": max(r["methods"] for r in mine),
                    "comparisons": by["recommender"]["comparisons"],
                    "regret": by["recommender"]["mean_regret"], "rho": by["recommender"]["rho"],
                    "full_ft_regret": by["full FT whenever it fits"]["mean_regret"],
                    "full_ft_rho": by["full FT whenever it fits"]["rho"]})
    return out


def evaluate(results: Path | None = None, points: list[Point] | None = None,
             sweeps: list[Sweep] | None = None) -> dict[str, Any]:
    """The three track records (module doc) and the in-sample ceiling. `points` and `sweeps` default to the
    published corpus plus the reference runs (`results`: another evidence set)."""
    if points is None or sweeps is None:
        points, sweeps = _default_evidence(results, points, sweeps)
    corpus_sources = sorted({p.source for p in points if not p.source.startswith("own:")})
    loso = _score_folds([(s, [p for p in points if p.source != s], [p for p in points if p.source == s],
                          [w for w in sweeps if w.source != s]) for s in corpus_sources])
    own = [p for p in points if p.source.startswith("own:")]
    tasks = sorted({_task_name(p) for p in own})
    loto = _score_folds([(t, [p for p in points if _task_name(p) != t], [p for p in own if _task_name(p) == t],
                          [w for w in sweeps if _sweep_task(w) != t]) for t in tasks])
    single = _score_folds(single_run_folds(points, sweeps), tuning_runs=DEFAULT_TUNING_RUNS)
    # The ceiling this corpus allows: every source predicted with itself included (in-sample), so what is
    # left is what a model of consistent method effects cannot express (seed noise, per-paper tuning).
    ceiling = _score_folds([(s, points, [p for p in points if p.source == s], sweeps) for s in corpus_sources],
                           {"recommender": _recommender, "posterior mean order": _posterior_mean})
    return {"leave_one_source_out": {"sources": len(corpus_sources), "summary": summarize(loso),
                                     "per_source": per_fold(loso), "rows": loso},
            "leave_one_task_out": {"tasks": len(tasks), "summary": summarize(loto), "per_task": per_task(loto),
                                   "rows": loto},
            "single_run": {"comparisons": len({r["comparison"] for r in single}), "summary": summarize(single),
                           "per_fold": per_fold(single), "rows": single},
            "in_sample_ceiling": {"summary": summarize(ceiling, ("recommender", "posterior mean order"))}}


def _default_evidence(results: Path | None, points: list[Point] | None,
                      sweeps: list[Sweep] | None) -> tuple[list[Point], list[Sweep]]:
    from peftbench.recommend.corpus import load_corpus
    from peftbench.recommend.fitting import default_evidence
    from peftbench.recommend.points import corpus_points, merge, own_points
    from peftbench.recommend.sensitivity import own_sensitivity_sweeps, published_sweeps
    from peftbench.results import reference_results_dir, suite_result_files

    if points is None:
        points = merge(corpus_points(), own_points(default_evidence(results).runs)).points
    if sweeps is None:
        sweeps = own_sensitivity_sweeps(suite_result_files(results or reference_results_dir())) + \
            published_sweeps(load_corpus())
    return points, sweeps


def _sweep_task(sweep: Sweep) -> str:
    """The task a sweep belongs to, named as `_task_name` names own points (published sweeps: its comparison)."""
    return sweep.comparison.split("|")[1].split("/")[-1] if sweep.source.startswith("own:") else sweep.comparison


def single_run_folds(points: list[Point], sweeps: list[Sweep]) -> list[Fold]:
    """The single-run protocol's folds: per own task, and per published source with sweeps, the held-out
    comparison of each swept method's score at its un-tuned rate (module doc)."""
    folds: list[Fold] = []
    own_tasks = sorted({_sweep_task(w) for w in sweeps if w.source.startswith("own:")})
    for task in own_tasks:
        swept = {w.method: w for w in sweeps if _sweep_task(w) == task and w.untuned_rate}

        # A def, not a lambda: mypy cannot type a lambda with a default argument (python/mypy#15459).
        def on_task(p: Point, t: str = task) -> bool:
            return p.source.startswith("own:") and _task_name(p) == t

        # Only sweeps with an untuned rate are in `swept`.
        held = [replace_score(p, swept[p.method].score_at(cast(float, swept[p.method].untuned_rate)))
                for p in _first_config(points, on_task) if p.method in swept]
        folds.append((f"{task} (one run)", [p for p in points if _task_name(p) != task], held,
                      [w for w in sweeps if _sweep_task(w) != task]))
    for source in sorted({w.source for w in sweeps if not w.source.startswith("own:")}):
        train = [p for p in points if p.source != source]
        suggested = suggested_rates(train)
        # A published sweep's suggested rate is never None (`suggested_rates`: only own sweeps may lack one).
        held = [_sweep_point(w, w.score_at(cast(float, suggested(w)))) for w in sweeps if w.source == source]
        folds.append((f"{source} (one run)", train, held, [w for w in sweeps if w.source != source]))
    return folds


def _first_config(points: list[Point], keep: Callable[[Point], bool]) -> list[Point]:
    """One point per (comparison, method) among those kept: a method's first configuration."""
    seen: dict[tuple[str, str], Point] = {}
    for p in points:
        if keep(p):
            seen.setdefault((p.comparison, p.method), p)
    return list(seen.values())


def replace_score(point: Point, score: float) -> Point:
    import dataclasses

    return dataclasses.replace(point, score=score)


def _sweep_point(sweep: Sweep, score: float) -> Point:
    """A published sweep's score at one rate as a held-out point of its table block (`Sweep.comparison`)."""
    metric = sweep.comparison.split("|")[6]
    return Point(source=sweep.source, comparison=sweep.comparison, method=sweep.method, config=sweep.method,
                 value=0.0, score=score, metric=metric, kind=sweep.kind, architecture=sweep.architecture,
                 log_params=sweep.log_params, log_examples=sweep.log_examples, log_steps=None, cite=sweep.cite)


def _task_name(p: Point) -> str:
    """The same data in two suites (rt_sentiment in smoke and classification) is one task."""
    return p.comparison.split("|")[1].split("/")[-1] if p.source.startswith("own:") else p.comparison
