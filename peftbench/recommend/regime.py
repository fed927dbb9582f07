"""The quality model: what the evidence near the query says about each method, and how sure it is.

Each evidence point is weighted by a kernel on its distance to the query (log model size, task kind,
architecture, log data size, log training steps). Inside each comparison only differences between methods
count: a method's effect is its kernel-weighted mean difference to LoRA, shrunk (pseudo-weight
`PRIOR_WEIGHT`) toward the pooled effect of its kin near the query (`KIN`: partial pooling). A method with
little evidence near the query therefore sits near its kin with a wide standard error, and the ranking uses
a lower confidence bound (`QualityEstimate.lcb`), so two runs never outrank fifty. Comparisons from one source
share its protocol and its tuning effort, so they are not independent: the standard error carries a
between-source term (`BETWEEN_SOURCES`) that no number of comparisons from a single paper can shrink.
`QualityEstimate.weight` (the sum of kernel weights) is the effective number of comparisons at the query: below
`MIN_WEIGHT` the method has "no evidence at this scale".

No scikit-learn: the fit is a few numpy passes over ~1,500 points, milliseconds per query, so it is done
per query (the kernel depends on the query) and nothing needs caching.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from peftbench.recommend.points import GENERATION_KINDS, PROPOSED_BY, Point

T = TypeVar("T")

# Kernel bandwidths, in decades (log10). Set a priori from what the literature says moves method gaps
# (Delta Tuning: gaps shrink with model size; LoRA Without Regret: capacity vs data size), not tuned on
# the track record's held-out sources.
BANDWIDTH = {"params": 0.5, "examples": 1.0, "steps": 1.0}
UNKNOWN_FACTOR = 0.7  # a descriptor the point does not state (the query does: the match is uncertain)
ARCH_MISMATCH = 0.5  # encoder evidence for a decoder query, and so on
PRIOR_WEIGHT = 1.0  # the prior counts as one comparison at the query
PRIOR_MEAN = -0.02  # a method's effect before evidence: a little below LoRA (conservative: LoRA is the default)
POOLED_SCATTER = 0.08  # typical comparison-to-comparison scatter of a method's difference to LoRA
NOISE_FLOOR = 0.02  # no method effect is known better than 2% of the reference score per comparison
NOISE_PSEUDO = 3.0  # how much a method's own scatter is pooled with everyone's
# Between-source standard deviation of a method's difference to LoRA: measured on the corpus as the spread of
# per-source mean differences beyond their sampling error (adapter 0.06 over 6 sources, bitfit 0.02 over 4,
# full FT 0.03 over 5, prompt tuning 0.11 over 4, prefix tuning 0.18 over 6 with PEFT-Bench's outlier).
BETWEEN_SOURCES = 0.05
# Partial pooling: a method's effect is shrunk toward the mean of its kin near the query, not toward one
# global constant. Kin are methods that change the model the same way; this is finer than `Method.family`
# where the family mixes mechanisms ((IA)3 rescales activations like the selective methods rather than
# adding a bottleneck; the bottleneck adapter has no kin and keeps the global prior).
KIN = {"lora": "low_rank", "qlora": "low_rank", "dora": "low_rank", "rslora": "low_rank",
       "adalora": "low_rank", "loha": "low_rank", "lokr": "low_rank", "vera": "low_rank",
       "oft": "orthogonal", "boft": "orthogonal",
       "ia3": "scaling", "bitfit": "scaling", "ln_tuning": "scaling",
       "prompt_tuning": "soft_prompt", "p_tuning": "soft_prompt", "prefix_tuning": "soft_prompt"}
Z = 1.2816  # one-sided 90% / two-sided 80%
MIN_WEIGHT = 1.0  # effective comparisons at the query below which a method has no evidence at this scale
NEAR = 0.25  # a comparison "in the query's regime" has kernel weight at least this
MIN_NEAR_FOR_FIRST = 5  # no method is ranked first on fewer comparisons than this in the query's regime
# ... nor on one source's word alone: a paper's own method usually wins in that paper (the between-source
# spread above), so a first place needs its regime's comparisons to come from at least this many sources.
# The source that introduced a method (`points.PROPOSED_BY`) is not one of them for that method: DoRA's
# repository alone plus one other paper is one independent word, not two. Measured leave-one-source-out
# (with 22 sources): regret 1.58 -> 1.25, rho 0.33 -> 0.35. Discounting such comparisons' weight in
# the mean as well (by half) did not help (1.30), so it is not done.
MIN_SOURCES_FOR_FIRST = 2
FIRST_PLACE_NEEDS = (f"a first place needs {MIN_NEAR_FOR_FIRST} comparisons in this regime "
                     f"from {MIN_SOURCES_FOR_FIRST} independent sources (not the method's own paper)")
# A query that names a benchmarked task (`--task SUITE/TASK`, the report's pick) has that task's own
# measurement: it counts as this many comparisons at the query, so the answer agrees with the task's table
# unless the rest of the evidence is much stronger.
DIRECT = 4.0
# Own reference runs: a difference between methods measured on this many seeds each carries a full weight
# (`_Table.seed_factor`); the reference runs measure the default set on three.
FULL_SEEDS = 3


@dataclass(frozen=True)
class Regime:
    """The query in the points' descriptors."""

    kind: str
    architecture: str | None
    log_params: float | None
    log_examples: float | None
    log_steps: float | None
    own_task: str | None = None  # "suite/task" when the query is a benchmarked task: its runs weigh DIRECT

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


def promote_leader(order: list[T], may_lead: Callable[[T], bool],
                   merit: Callable[[T], float] | None = None) -> list[T]:
    """`order` (best first) with a leader moved to the front, in place: the first-place rule shared by the
    plain order and the serving re-order. The leader is, among the items that may lead, the one of highest
    `merit` (ties: the earlier in `order`), or the first of them without `merit`. Unchanged when nothing may
    lead."""
    eligible = [item for item in order if may_lead(item)]
    leader = (max(eligible, key=merit) if merit and eligible  # max keeps the first of equal merits
              else next(iter(eligible), None))
    if leader is not None:
        order.remove(leader)
        order.insert(0, leader)
    return order


def lead_rule(items: list[T], outright: Callable[[T], bool], provisional: Callable[[T], bool]) -> Callable[[T], bool]:
    """Who may take first place among `items`: those that may lead outright; where none does, those that may
    lead provisionally (enough comparisons in the regime, from one source). One rule for the plain order, the
    serving re-order and the answer's wording."""
    return outright if any(outright(item) for item in items) else provisional


def kind_similarity(a: str, b: str) -> float:
    if a == b:
        return 1.0
    gen_a, gen_b = a in GENERATION_KINDS, b in GENERATION_KINDS
    if gen_a and gen_b:
        return 0.5
    if not gen_a and not gen_b:  # classification and multiple choice
        return 0.5
    return 0.2


def _gauss(point: float | None, query: float | None, width: float) -> float:
    # A descriptor the query leaves open does not discriminate: every point matches it alike (factor 1).
    # Scoring it as an uncertain match instead would shrink every weight at once, so an ordinary query
    # without a data size would find "no evidence near" for methods with hundreds of comparisons.
    if query is None:
        return 1.0
    if point is None:
        return UNKNOWN_FACTOR
    a, b = point, query
    return math.exp(-0.5 * ((a - b) / width) ** 2)


def kernel(point: Point, regime: Regime) -> float:
    arch = 1.0 if not regime.architecture or point.architecture == regime.architecture else ARCH_MISMATCH
    direct = DIRECT if regime.own_task and point.comparison.startswith(f"own|{regime.own_task}|") else 1.0
    return (direct * kind_similarity(point.kind, regime.kind) * arch
            * _gauss(point.log_params, regime.log_params, BANDWIDTH["params"])
            * _gauss(point.log_examples, regime.log_examples, BANDWIDTH["examples"])
            * _gauss(point.log_steps, regime.log_steps, BANDWIDTH["steps"]))


def nearness(point: Point, regime: Regime) -> str:
    """Why a point counts at this query, in words: its task kind against the query's, and its model and data
    size (a summarization query citing a QA table says so, and how much that costs the citation's weight)."""
    kind = ("same task kind" if point.kind == regime.kind else
            f"{point.kind}, weighted x{kind_similarity(point.kind, regime.kind):g} as a "
            f"{'generation' if point.kind in GENERATION_KINDS else 'classification'}-like kind")
    size = "model size unstated" if point.log_params is None else f"{_human(10 ** point.log_params)} params"
    data = "" if point.log_examples is None else f", {_human(10 ** point.log_examples)} examples"
    return f"{kind}; {size}{data}"


@dataclass
class QualityEstimate:
    method: str
    effect: float  # vs the comparisons' average method, in fractions of the reference score
    se: float
    weight: float  # effective comparisons at the query
    near: int  # comparisons with kernel weight >= NEAR
    points: int  # points with any weight
    nearest: list[tuple[float, Point]] = field(default_factory=list)
    near_sources: int = 0  # independent sources among the `near` comparisons
    measured_here: bool = False  # the query is a benchmarked task (`Regime.own_task`) and this method ran on it

    @property
    def lcb(self) -> float:
        return self.effect - Z * self.se

    @property
    def evidenced(self) -> bool:
        return self.weight >= MIN_WEIGHT

    @property
    def may_lead_provisionally(self) -> bool:
        """Enough comparisons in the query's regime to lead, whatever their sources: the leader only where no
        method may lead outright (`may_lead`), and the answer says its first place is one source's word. A
        measurement on the queried task does not lower the bar of `MIN_NEAR_FOR_FIRST` comparisons here either
        (as in `may_lead`, it only stands in for a second source)."""
        return self.evidenced and self.near >= MIN_NEAR_FOR_FIRST

    @property
    def may_lead(self) -> bool:
        """Enough evidence in the query's regime, from enough sources, to be ranked first."""
        # A measurement on the query's own task is not one paper's word about its own method: it suffices.
        return (self.evidenced and self.near >= MIN_NEAR_FOR_FIRST
                and (self.near_sources >= MIN_SOURCES_FOR_FIRST or self.measured_here))


def fit(points: list[Point], regime: Regime) -> dict[str, QualityEstimate]:
    """Method effects near `regime`, each against LoRA in the same comparison (the most compared method).

    Direct differences only: a method's effect is the kernel-weighted mean of (method - LoRA) over the
    comparisons that measured both; where a comparison has full FT but no LoRA, (method - full) plus the
    full-vs-LoRA effect at the query, at half weight (one hop adds that effect's error). Longer chains
    through third methods are not used: sources disagree, and chaining spreads one source's oddity (prefix
    tuning above full FT on GPT-2) to methods it never measured. Each effect is shrunk, with weight
    `PRIOR_WEIGHT`, toward its kin's pooled effect at the query (`KIN`), or `PRIOR_MEAN` (a little below
    LoRA, the default everybody has evidence for) for a method without kin or kin without evidence.
    """
    cells: dict[tuple[str, str], list[Point]] = defaultdict(list)
    for p in points:
        cells[(p.comparison, p.method)].append(p)
    tables: dict[str, _Table] = {}
    for (comp, method), group in cells.items():
        if comp not in tables:
            tables[comp] = _Table(group[0].source, {}, set(), PROPOSED_BY.get(group[0].source))
        table = tables[comp]
        table.cells[method] = (sum(p.value for p in group) / len(group), kernel(group[0], regime))
        table.log_params.add(group[0].log_params)
        if group[0].source.startswith("own:"):
            table.seeds[method] = sum(p.runs for p in group)
        if all(p.anchor for p in group):
            table.anchors.add(method)
    source_of = {comp: table.source for comp, table in tables.items()}
    full = _effects(tables, "full", 0.0, 0.0)
    full_effect = _shrunk(full["full"], source_of, PRIOR_MEAN) if "full" in full else (PRIOR_MEAN, 1.0)
    diffs = _effects(tables, None, *full_effect)
    kin_prior = _kin_priors(diffs, source_of)
    estimates = {}
    for method, obs in diffs.items():
        effect, se = _shrunk(obs, source_of, kin_prior.get(KIN.get(method, ""), PRIOR_MEAN)
                             if method != "lora" else PRIOR_MEAN)
        nearest = [(kernel(p, regime), p) for (c, m), ps in cells.items()
                   if m == method and m not in tables[c].anchors for p in ps[:1]]
        nearest.sort(key=lambda wp: -wp[0])
        near = [c for w, _, c in obs if w >= NEAR]
        # A source does not vouch independently for the method it introduced (or for a difference to LoRA when
        # it introduced LoRA): the first-place bar's sources are counted without it.
        independent = {source_of[c] for c in near if not tables[c].vouches_for_own(method)
                       and not _far_own_run(c, tables[c], regime)}
        estimates[method] = QualityEstimate(method, effect, se, sum(w for w, _, _ in obs),
                                     len(near), len(obs), nearest[:3], len(independent),
                                     bool(regime.own_task) and any(c.startswith(f"own|{regime.own_task}|")
                                                                   for _, _, c in obs))
    for _, method in cells:  # methods measured only where nothing compares them
        if method not in estimates:
            nearest = sorted(((kernel(p, regime), p) for p in points if p.method == method and not p.anchor),
                             key=lambda wp: -wp[0])
            estimates[method] = QualityEstimate(method, kin_prior.get(KIN.get(method, ""), PRIOR_MEAN), 1.0, 0.0, 0, 0,
                                         nearest[:3])
    return estimates


OWN_SOURCE_WITHIN = 1.0  # decades of model size: own CPU runs vouch as a source only for queries this close


def _far_own_run(comparison: str, table: _Table, regime: Regime) -> bool:
    """An own reference run on a 22M-135M model (one seed, a few steps on a CPU) is evidence at any size, but
    never an independent *source* for a first place at a size a decade away: a 7B pick needs a second paper."""
    if not table.source.startswith("own:") or regime.log_params is None:
        return False
    sizes = [p for p in table.log_params if p is not None]
    return bool(sizes) and min(abs(p - regime.log_params) for p in sizes) > OWN_SOURCE_WITHIN


def _kin_priors(diffs: dict[str, list[tuple[float, float, str]]], source_of: dict[str, str]) -> dict[str, float]:
    """Each kin group's pooled difference to LoRA at the query (LoRA itself, the reference, excluded)."""
    pooled: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for method, obs in diffs.items():
        if method != "lora" and method in KIN:
            pooled[KIN[method]].extend(obs)
    return {kin: _shrunk(obs, source_of, PRIOR_MEAN)[0] for kin, obs in pooled.items()}


@dataclass
class _Table:
    """One comparison as the fit sees it."""

    source: str
    cells: dict[str, tuple[float, float]]  # method -> (value, kernel weight)
    anchors: set[str]  # methods whose figure is quoted from another source: the others' reference only
    proposes: str | None  # the method this comparison's source introduced (`points.PROPOSED_BY`)
    seeds: dict[str, int] = field(default_factory=dict)  # own runs: seeds averaged into each method's value
    log_params: set[float | None] = field(default_factory=set)  # the model sizes of its points

    def seed_factor(self, method: str, reference: str) -> float:
        """How much of a full weight a difference between two own measurements carries, by their seeds: a
        difference's variance is the sum of its two means' (1/n each), full at `FULL_SEEDS` seeds on both sides
        (one seed beside three: half). Published figures state no seed count and keep a full weight."""
        n, ref = self.seeds.get(method), self.seeds.get(reference)
        if not n or not ref:
            return 1.0
        return min(1.0, (2 / FULL_SEEDS) / (1 / n + 1 / ref))

    def vouches_for_own(self, method: str) -> bool:
        """Whether this comparison's source introduced `method` or LoRA, the method every difference is to."""
        return self.proposes is not None and self.proposes in (method, "lora")


def _effects(tables: dict[str, _Table], only: str | None, full_effect: float,
             full_se: float) -> dict[str, list[tuple[float, float, str]]]:
    """method -> [(weight, difference vs LoRA, comparison)] from the comparisons that allow one. An anchor (a
    figure quoted from another source) is the reference for the methods beside it, never an observation."""
    out: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for comp, table in tables.items():
        methods = table.cells
        for method, (value, weight) in methods.items():
            if (only and method != only) or weight <= 1e-6 or method in table.anchors:
                continue
            if method == "lora":
                others = [m for m in methods if m != "lora"]
                if others:  # LoRA's own evidence: comparisons where it met something else (its effect is 0)
                    out["lora"].append((weight, 0.0, comp))
            elif "lora" in methods:
                out[method].append((weight * table.seed_factor(method, "lora"), value - methods["lora"][0], comp))
            elif "full" in methods and method != "full" and full_se < 0.5:
                out[method].append((weight * 0.5 * table.seed_factor(method, "full"),
                                    value - methods["full"][0] + full_effect, comp))
    return out


def _shrunk(obs: list[tuple[float, float, str]], source_of: dict[str, str],
            prior_mean: float) -> tuple[float, float]:
    """Weighted mean difference shrunk toward `prior_mean`, and its standard error: the within-comparison
    scatter over the effective number of comparisons, plus `BETWEEN_SOURCES` for each source's share of the
    weight (one source: the whole term; many equal sources: a small part of it)."""
    w = np.array([o[0] for o in obs])
    d = np.array([o[1] for o in obs])
    total = float(w.sum())
    effect = float((w @ d + PRIOR_WEIGHT * prior_mean) / (total + PRIOR_WEIGHT))
    scatter = float(w @ (d - effect) ** 2 / total) if total > 0 else 0.0
    sigma2 = max((total * scatter + NOISE_PSEUDO * POOLED_SCATTER ** 2) / (total + NOISE_PSEUDO), NOISE_FLOOR ** 2)
    by_source: dict[str, float] = defaultdict(float)
    for weight, _, comp in obs:
        by_source[source_of.get(comp, comp)] += weight
    shares = sum((x / (total + PRIOR_WEIGHT)) ** 2 for x in by_source.values())
    shares += (PRIOR_WEIGHT / (total + PRIOR_WEIGHT)) ** 2  # the prior is one more "source"
    return effect, math.sqrt(sigma2 / (total + PRIOR_WEIGHT) + BETWEEN_SOURCES ** 2 * shares)


def separated(a: QualityEstimate, b: QualityEstimate) -> bool:
    """Whether `a` beats `b` by more than the evidence's noise (one-sided 90%)."""
    return a.effect - b.effect > Z * math.sqrt(a.se ** 2 + b.se ** 2)
