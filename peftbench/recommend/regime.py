"""The quality model: what the evidence near the query says about each method, and how sure it is.

Each evidence point is weighted by a kernel on its distance to the query (log model size, task kind,
architecture, log data size, log training steps). Inside each comparison only differences between methods
count, so the model is additive: value = comparison effect + method effect + noise, fitted by weighted
least squares with a ridge prior (pseudo-weight `PRIOR_WEIGHT`) that pulls every method effect toward the
comparison's average method. A method with little evidence near the query therefore sits near "an average
method" with a wide standard error, and the ranking uses a lower confidence bound (`Estimate.lcb`), so two
runs never outrank fifty. `Estimate.weight` (the sum of kernel weights) is the effective number of
comparisons at the query: below `MIN_WEIGHT` the method has "no evidence at this scale".

No scikit-learn: the fit is a few numpy passes over ~1,500 points, milliseconds per query, so it is done
per query (the kernel depends on the query) and nothing needs caching.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from peftbench.recommend.points import GENERATION_KINDS, Point

# Kernel bandwidths, in decades (log10). Set a priori from what the literature says moves method gaps
# (Delta Tuning: gaps shrink with model size; LoRA Without Regret: capacity vs data size), not tuned on
# the track record's held-out sources.
BANDWIDTH = {"params": 0.5, "examples": 1.0, "steps": 1.0}
UNKNOWN_FACTOR = 0.7  # a descriptor the point (or the query) does not state
ARCH_MISMATCH = 0.5  # encoder evidence for a decoder query, and so on
PRIOR_WEIGHT = 1.0  # the prior counts as one comparison at the query
PRIOR_MEAN = -0.02  # a method's effect before evidence: a little below LoRA (conservative: LoRA is the default)
POOLED_SCATTER = 0.08  # typical comparison-to-comparison scatter of a method's difference to LoRA
NOISE_FLOOR = 0.02  # no method effect is known better than 2% of the reference score per comparison
NOISE_PSEUDO = 3.0  # how much a method's own scatter is pooled with everyone's
Z = 1.2816  # one-sided 90% / two-sided 80%
MIN_WEIGHT = 1.0  # effective comparisons at the query below which a method has no evidence at this scale
NEAR = 0.25  # a comparison "in the query's regime" has kernel weight at least this
MIN_NEAR_FOR_FIRST = 5  # no method is ranked first on fewer comparisons than this in the query's regime


@dataclass(frozen=True)
class Regime:
    """The query in the points' descriptors."""

    kind: str
    architecture: str | None
    log_params: float | None
    log_examples: float | None
    log_steps: float | None

    def describe(self) -> str:
        def fmt(x: float | None, unit: str) -> str:
            return "?" if x is None else f"{_human(10 ** x)}{unit}"
        return (f"{self.kind}, {fmt(self.log_params, ' params')}, {fmt(self.log_examples, ' examples')}, "
                f"{fmt(self.log_steps, ' steps')}")


def _human(x: float) -> str:
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.0f}"


def kind_similarity(a: str, b: str) -> float:
    if a == b:
        return 1.0
    gen_a, gen_b = a in GENERATION_KINDS, b in GENERATION_KINDS
    if gen_a and gen_b:
        return 0.5
    if not gen_a and not gen_b:  # classification and multiple choice
        return 0.5
    return 0.2


def _gauss(a: float | None, b: float | None, width: float) -> float:
    if a is None or b is None:
        return UNKNOWN_FACTOR
    return math.exp(-0.5 * ((a - b) / width) ** 2)


def kernel(point: Point, regime: Regime) -> float:
    arch = 1.0 if not regime.architecture or point.architecture == regime.architecture else ARCH_MISMATCH
    return (kind_similarity(point.kind, regime.kind) * arch
            * _gauss(point.log_params, regime.log_params, BANDWIDTH["params"])
            * _gauss(point.log_examples, regime.log_examples, BANDWIDTH["examples"])
            * _gauss(point.log_steps, regime.log_steps, BANDWIDTH["steps"]))


@dataclass
class Estimate:
    method: str
    effect: float  # vs the comparisons' average method, in fractions of the reference score
    se: float
    weight: float  # effective comparisons at the query
    near: int  # comparisons with kernel weight >= NEAR
    points: int  # points with any weight
    nearest: list[tuple[float, Point]] = field(default_factory=list)

    @property
    def lcb(self) -> float:
        return self.effect - Z * self.se

    @property
    def evidenced(self) -> bool:
        return self.weight >= MIN_WEIGHT


def fit(points: list[Point], regime: Regime) -> dict[str, Estimate]:
    """Method effects near `regime`, each against LoRA in the same comparison (the most compared method).

    Direct differences only: a method's effect is the kernel-weighted mean of (method - LoRA) over the
    comparisons that measured both; where a comparison has full FT but no LoRA, (method - full) plus the
    full-vs-LoRA effect at the query, at half weight (one hop adds that effect's error). Longer chains
    through third methods are not used: sources disagree, and chaining spreads one source's oddity (prefix
    tuning above full FT on GPT-2) to methods it never measured. Each effect is shrunk toward `PRIOR_MEAN`
    (a little below LoRA, the default everybody has evidence for) with weight `PRIOR_WEIGHT`.
    """
    cells: dict[tuple[str, str], list[Point]] = defaultdict(list)
    for p in points:
        cells[(p.comparison, p.method)].append(p)
    comps: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)  # comparison -> method -> (value, weight)
    for (comp, method), group in cells.items():
        comps[comp][method] = (sum(p.value for p in group) / len(group), kernel(group[0], regime))
    full = _effects(comps, "full", 0.0, 0.0)
    full_effect = _shrunk(full["full"]) if "full" in full else (PRIOR_MEAN, 1.0)
    diffs = _effects(comps, None, *full_effect)
    estimates = {}
    for method, obs in diffs.items():
        effect, se = _shrunk(obs)
        group = [(kernel(p, regime), p) for (c, m), ps in cells.items() if m == method for p in ps[:1]]
        group.sort(key=lambda wp: -wp[0])
        estimates[method] = Estimate(method, effect, se, sum(w for w, _, _ in obs),
                                     sum(1 for w, _, _ in obs if w >= NEAR), len(obs), group[:3])
    for _, method in cells:  # methods measured only where nothing compares them
        if method not in estimates:
            near = sorted(((kernel(p, regime), p) for p in points if p.method == method), key=lambda wp: -wp[0])
            estimates[method] = Estimate(method, PRIOR_MEAN, 1.0, 0.0, 0, 0, near[:3])
    return estimates



def _effects(comps: dict[str, dict[str, tuple[float, float]]], only: str | None, full_effect: float,
             full_se: float) -> dict[str, list[tuple[float, float, str]]]:
    """method -> [(weight, difference vs LoRA, comparison)] from the comparisons that allow one."""
    out: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for comp, methods in comps.items():
        for method, (value, weight) in methods.items():
            if (only and method != only) or weight <= 1e-6:
                continue
            if method == "lora":
                others = [m for m in methods if m != "lora"]
                if others:  # LoRA's own evidence: comparisons where it met something else (its effect is 0)
                    out["lora"].append((weight, 0.0, comp))
            elif "lora" in methods:
                out[method].append((weight, value - methods["lora"][0], comp))
            elif "full" in methods and method != "full" and full_se < 0.5:
                out[method].append((weight * 0.5, value - methods["full"][0] + full_effect, comp))
    return out


def _shrunk(obs: list[tuple[float, float, str]]) -> tuple[float, float]:
    w = np.array([o[0] for o in obs])
    d = np.array([o[1] for o in obs])
    total = float(w.sum())
    effect = float((w @ d + PRIOR_WEIGHT * PRIOR_MEAN) / (total + PRIOR_WEIGHT))
    scatter = float(w @ (d - effect) ** 2 / total) if total > 0 else 0.0
    sigma2 = max((total * scatter + NOISE_PSEUDO * POOLED_SCATTER ** 2) / (total + NOISE_PSEUDO), NOISE_FLOOR ** 2)
    return effect, math.sqrt(sigma2 / (total + PRIOR_WEIGHT))



def separated(a: Estimate, b: Estimate) -> bool:
    """Whether `a` beats `b` by more than the evidence's noise (one-sided 90%)."""
    return a.effect - b.effect > Z * math.sqrt(a.se ** 2 + b.se ** 2)
