"""The decision: which method to use, weighing predicted quality, how sure that is, how much an untuned learning
rate costs, and what each choice costs to train.

Stated rule (the tests read it back):
1. Each method's *expected* quality is its predicted quality (`regime.fit`, relative to the comparison's
   reference) minus the quality it is expected to lose to the learning rate with the user's tuning budget
   (`sensitivity.expected_loss`); its risk-aware score is that minus `Z` standard errors.
2. *Best quality*: the highest expected quality among the methods with the evidence to lead (`regime.may_lead`;
   where none has it outright, those that lead provisionally). Choosing it minimises expected regret, since
   every method's regret is measured from the same best.
3. *Ties*: methods the evidence cannot separate from the best (`separated`: the difference is inside the
   one-sided 90% bound) and predicted within `TIE_MARGIN` of it (a cheap method with a wide interval around a
   much lower prediction is not a tie, it is a gamble).
4. *The pick*: among the ties, the cheapest (GPU-hours for the whole training; costs within `SAME_COST` are one
   cost), then the most robust (least learning-rate loss), then the best expected quality. A tie goes to the
   cheaper, more robust method, and the answer says what the more expensive one would have given.
5. *Best value*: the cheapest method whose expected quality is within the value margin of the best's (default
   `VALUE_MARGIN`, 2 points of the reference score; `--value-margin`), shown when it differs from the pick.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from peftbench.recommend.regime import QualityEstimate, Z
from peftbench.recommend.sensitivity import Sensitivity, expected_loss

VALUE_MARGIN = 0.02  # fraction of the reference score (2 points on a 0-100 metric)
# Half a point: half the median seed standard deviation the corpus reports (0.99% of the reference score over
# 984 rows that give one). Chosen among 0, 0.5, 1 and 2 points on the track record (benchmarks/
# recommender_track_record.md lists each): wider ties hand tuned papers' better method to a cheaper one.
TIE_MARGIN = 0.005
SAME_COST = 1.10  # costs within 10% of each other are one cost: estimates are not better than that


@dataclass(frozen=True)
class Option:
    """One method as the decision sees it."""

    method: str
    quality: float  # predicted quality (any scale shared by all options: relative to full FT or to LoRA)
    se: float
    lr_loss: float = 0.0  # expected loss to the learning rate with the user's tuning runs
    cost: float | None = None  # GPU-hours of the whole training (or any one cost unit shared by all options)
    may_lead: bool = True

    @property
    def expected(self) -> float:
        return self.quality - self.lr_loss

    @property
    def lower(self) -> float:
        return self.expected - Z * self.se


@dataclass
class Decision:
    pick: Option
    best_quality: Option
    best_value: Option | None  # None where it is the pick
    ties: list[Option] = field(default_factory=list)  # the methods the evidence cannot tell from the best
    margin: float = VALUE_MARGIN

    @property
    def differs(self) -> bool:
        return self.pick.method != self.best_quality.method


def separated(a: Option, b: Option) -> bool:
    """Whether `a` beats `b` by more than the evidence's noise (one-sided 90%)."""
    return a.expected - b.expected > Z * math.sqrt(a.se ** 2 + b.se ** 2)


def difference_interval(a: Option, b: Option) -> tuple[float, float, float]:
    """(a - b, and its 80% interval), in the options' quality scale."""
    diff = a.expected - b.expected
    half = Z * math.sqrt(a.se ** 2 + b.se ** 2)
    return diff, diff - half, diff + half


def cheapest(options: list[Option], then: Callable[[Option], tuple]) -> Option:
    """The cheapest option (costs within SAME_COST are one cost; an unknown cost sorts after every known one),
    ties broken by `then` (smaller first)."""
    known = [o.cost for o in options if o.cost is not None and o.cost > 0]
    floor = min(known) if known else None

    def bucket(o: Option) -> float:
        if o.cost is None or floor is None:
            return math.inf
        return math.floor(math.log(max(o.cost, floor) / floor) / math.log(SAME_COST) + 1e-9)

    return min(options, key=lambda o: (bucket(o), *then(o)))


def decide(options: list[Option], margin: float = VALUE_MARGIN) -> Decision | None:
    """The decision over `options` (module doc); None when no option may lead."""
    eligible = [o for o in options if o.may_lead]
    if not eligible:
        return None
    best = max(eligible, key=lambda o: o.expected)
    ties = [o for o in eligible if o is best or (not separated(best, o) and best.expected - o.expected <= TIE_MARGIN)]
    pick = cheapest(ties, lambda o: (o.lr_loss, -o.expected))
    within = [o for o in eligible if best.expected - o.expected <= margin]
    value = cheapest(within, lambda o: (-o.expected,))
    return Decision(pick, best, None if value.method == pick.method else value, ties, margin)


def options_for(methods: list[str], estimates: dict[str, QualityEstimate], sensitivity: dict[str, Sensitivity],
                costs: Mapping[str, float | None], tuning_runs: int,
                proxies: Mapping[str, str] | None = None) -> list[Option]:
    """Options for the methods that have an estimate, with who may lead by the recommender's lead rule (outright
    where any method may; else provisionally). `proxies`: methods whose quality and learning-rate behaviour are
    another's (QLoRA's are LoRA's), their cost their own."""
    proxies = proxies or {}
    known = [m for m in methods if proxies.get(m, m) in estimates]
    outright = any(estimates[proxies.get(m, m)].may_lead for m in known)
    out = []
    for m in known:
        e = estimates[proxies.get(m, m)]
        out.append(Option(m, e.effect, e.se, expected_loss(sensitivity.get(proxies.get(m, m)), tuning_runs),
                          costs.get(m), e.may_lead if outright else e.may_lead_provisionally))
    return out
