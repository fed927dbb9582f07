"""The decision (`decision.decide`) applied to the engine's ranked candidates: what each costs to train, what an
untuned learning rate would cost it, the pick moved to first place, and the answer's words about it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from peftbench.method_declarations import PROXIES
from peftbench.recommend.decision import Decision, Option, decide, difference_interval, options_for
from peftbench.recommend.regime import QualityEstimate, Regime
from peftbench.recommend.sensitivity import Sensitivity, Sweep, at_scale, expected_loss, suggested_rates

if TYPE_CHECKING:
    from peftbench.recommend.engine import Candidate

STEPS_WHEN_UNKNOWN = 1000  # optimizer steps (of the effective batch) costed where the data size is not given
NEAR_SWEEPS = 1.0  # effective sweeps at the query's size below which no method is called fragile or robust


def gpu_hours(cand: Candidate, epochs: float) -> float | None:
    """GPU-hours of the whole training (every card of a multi-GPU setup), or of STEPS_WHEN_UNKNOWN optimizer
    steps where the data size is unknown; None where the estimator gave no step time."""
    if cand.epoch_seconds is not None:
        return cand.epoch_seconds * epochs * cand.gpus / 3600
    if cand.step_seconds is not None:
        # step_seconds is one micro-batch; an optimizer step accumulates several. Methods fit different
        # micro-batches for the same effective batch, so micro-steps are not a cost two methods can share.
        return cand.step_seconds * cand.gradient_accumulation * STEPS_WHEN_UNKNOWN * cand.gpus / 3600
    return None


def decide_candidates(ranked: list[Candidate], estimates: dict[str, QualityEstimate], sweeps: list[Sweep],
                      regime: Regime, points: list[Any], tuning_runs: int, margin: float,
                      epochs: float, hours: str = "GPU-h") -> dict[str, Any] | None:
    """Decide among the ranked candidates and put the pick first (in place); return the decision as the answer
    reports it, its `reasons` in the user's terms first; None when no candidate may lead. `hours`: the unit of
    the training cost ("CPU-h" when the question is about this CPU)."""
    sensitivity = at_scale(sweeps, regime.log_params, suggested_rates(points))
    costs = {c.method: gpu_hours(c, epochs) for c in ranked}
    decision = decide(options_for([c.method for c in ranked], estimates, sensitivity, costs, tuning_runs, PROXIES),
                      margin)
    if decision is None:
        return None
    by_method = {c.method: c for c in ranked}
    for c in ranked:
        c.gpu_hours = None if costs[c.method] is None else float(f"{costs[c.method]:.4g}")  # small runs: not 0.0
        sens = sensitivity.get(PROXIES.get(c.method, c.method))
        c.learning_rate_loss = round(expected_loss(sens, tuning_runs), 4)
    pick = by_method[decision.pick.method]
    ranked.remove(pick)
    ranked.insert(0, pick)
    unit = hours if pick.epoch_seconds is not None else f"{hours} per {STEPS_WHEN_UNKNOWN:,} steps"
    words = explain(decision, unit, tuning_runs, sensitivity.get(PROXIES.get(pick.method, pick.method)))
    rivals = [o for o in decision.ties if PROXIES.get(o.method, o.method) != PROXIES.get(pick.method, pick.method)]
    return {"reasons": words, "separates": not rivals, "pick": decision.pick.method,
            "best_quality": decision.best_quality.method,
            "best_value": decision.best_value.method if decision.best_value else None,
            "ties": [o.method for o in decision.ties], "tuning_runs": tuning_runs,
            "value_margin_points": round(100 * margin, 2), "cost_unit": unit, "summary": words[0]}


def _cost(option: Option, unit: str) -> str:
    return "cost unknown" if option.cost is None else f"{option.cost:.3g} {unit}"


def _ratio(a: Option, b: Option) -> str:
    if a.cost is None or b.cost is None or b.cost <= 0:
        return "an unknown share of"
    return f"{a.cost / b.cost:.1f}x"


def _versus(a: Option, b: Option, unit: str) -> str:
    """`a` against `b`: the expected difference in % of full FT's score with its 80% interval, and the cost."""
    diff, low, high = difference_interval(a, b)
    return (f"{100 * diff:+.1f}% of full FT's score ({100 * low:+.1f} to {100 * high:+.1f}, 80%) at {_ratio(a, b)} "
            f"the cost ({_cost(a, unit)} vs {_cost(b, unit)})")


def explain(decision: Decision, unit: str, tuning_runs: int, sens: Sensitivity | None) -> list[str]:
    """The pick's reasons, in the user's terms: why it, what the best-quality and best-value alternatives would
    give and cost, and what the learning rate risks with this tuning budget."""
    pick, best = decision.pick, decision.best_quality
    if decision.differs:
        first = (f"picked over {best.method}, the best predicted quality: {best.method} gives "
                 f"{_versus(best, pick, unit)}, a difference the evidence cannot separate from noise; a tie goes "
                 f"to the cheaper, more robust method")
    else:
        others = [o.method for o in decision.ties if o.method != pick.method]
        first = ("best predicted quality net of learning-rate risk"
                 + (f"; tied with {', '.join(others)} (within noise), and first of them by cost (within 10% is one "
                    "cost), then robustness" if others else "") + f" ({_cost(pick, unit)})")
    words = [first]
    runner = next((o for o in sorted(decision.ties + [decision.best_quality], key=lambda o: -o.expected)
                   if o.method != pick.method and {o.method, pick.method} != {"lora", "qlora"}), None)
    if runner is not None and not decision.differs:
        words.append(f"runner-up {runner.method}: {_versus(runner, pick, unit)}")
    if decision.best_value is not None:
        words.append(f"best value: {decision.best_value.method}, {_versus(decision.best_value, pick, unit)} "
                     f"(the cheapest within {100 * decision.margin:g}% of the best predicted quality; --value-margin)")
    words.append(_learning_rate_words(pick, tuning_runs, sens))
    return words


def _learning_rate_words(pick: Option, tuning_runs: int, sens: Sensitivity | None) -> str:
    runs = f"{tuning_runs} run{'s' if tuning_runs != 1 else ''} (--tuning-runs)"
    if sens is None or sens.weight < NEAR_SWEEPS:
        return (f"learning rate: no sweep of {pick.method} near this model size, so no method is favoured for "
                f"robustness; with {runs} at the suggested rate, budget x1/3 and x3 of it if the first run disappoints")
    return (f"learning rate: with {runs}, expect to lose {100 * pick.lr_loss:.1f}% of full FT's score to the rate "
            f"({sens.describe()})")
