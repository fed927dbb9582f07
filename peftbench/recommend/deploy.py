"""`recommend --deploy server|edge`: re-rank candidate methods by what serving them costs.

`serving_order` is what the engine calls on its ranked candidates: the predicted inference overhead of each
on the target card (`estimate.inference`), weighed by `deploy_ranking`, which says how each method moved.
`deploy_ranking` is a standalone weighting. Each candidate is a
dict with at least `method` and `quality` (predicted quality, higher is better, on the engine's scale —
a share of full fine-tuning's quality, ~0-1, is assumed when sizing the penalties) and any of:

- `adapter_bytes`: the trained artifact's size (full fine-tuning: the whole model);
- `base_bytes`: the base model's weight bytes (storage is weighed relative to it);
- `mergeable`: peft can merge it (default: `peftbench.serving`);
- `overhead_merged`, `overhead_unmerged`: inference latency ratios to the base model, measured
  (`inference` in run records) or predicted (`peftbench.estimate.inference`); `overhead_source` says which;
- `forgetting`: the change in general-text loss after fine-tuning, nats per token (> 0: forgot);
- `may_lead`: whether the engine would let it rank first (enough comparisons in the query's regime;
  default true). Serving re-orders freely below first place, as the plain order does, but first place
  goes to the best-scoring method that may lead whenever one exists.

How each scenario serves a method, and what it penalises (all penalties in quality units):

- **edge** (one task on a small device): merged where it can merge; latency overhead weighs fully, the
  artifact's size weighs little (one task), forgetting weighs fully (an edge model is also the general one).
- **server** with `adapters_per_base` N: N = 1 serves merged like edge; N > 1 keeps one base and serves the
  adapters unmerged (multi-adapter serving cannot merge N different deltas into one base), so the unmerged
  overhead counts and N artifacts must be stored: full fine-tuning needs N whole models.

`max_latency_overhead` X is a hard limit: candidates whose served overhead exceeds it drop below the rest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from peftbench.errors import UserError
from peftbench.recommend.regime import lead_rule, promote_leader
from peftbench.serving import serving

if TYPE_CHECKING:
    from peftbench.recommend.feasibility import Gpu

SCENARIOS = ("server", "edge")
# Quality lost per unit of each cost. Latency: per 100% of overhead (a 2x slower model loses 0.5 at the
# edge); storage: per base model's worth of artifacts kept (capped at one base: beyond it, a second GPU);
# forgetting: per nat/token of general-text loss gained (0.1 nats = ~10% higher perplexity).
WEIGHTS = {"edge": {"latency": 0.5, "storage": 0.02, "forgetting": 0.5},
           "server": {"latency": 0.25, "storage": 0.2, "forgetting": 0.25}}


@dataclass
class DeployEntry:
    method: str
    quality: float
    score: float  # quality less the deployment penalties
    rank_before: int
    rank: int
    serving: str  # merged | unmerged | as trained (full / bitfit: the tuned weights are the model)
    overhead: float | None  # the served latency ratio to the base model
    excluded: bool  # over --max-latency-overhead
    penalties: dict[str, float]
    explanation: str
    may_lead: bool = True  # enough comparisons in the query's regime to be ranked first

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DeployRanking:
    scenario: str
    adapters_per_base: int
    max_latency_overhead: float | None
    entries: list[DeployEntry]
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "entries": [e.to_dict() for e in self.entries]}


def deploy_ranking(candidates: list[dict[str, Any]], scenario: str, *, max_latency_overhead: float | None = None,
                   adapters_per_base: int = 1) -> DeployRanking:
    """Re-rank `candidates` (best first, as the engine ranked them) for a deployment scenario."""
    if scenario not in SCENARIOS:
        raise UserError(f"unknown deploy scenario '{scenario}' (valid: {', '.join(SCENARIOS)})")
    if adapters_per_base < 1:
        raise UserError("--adapters-per-base must be at least 1")
    if max_latency_overhead is not None and max_latency_overhead < 1:
        raise UserError("--max-latency-overhead is a ratio to the base model's latency: 1.0 or more (1.2 = +20%)")
    for c in candidates:
        if "method" not in c or not isinstance(c.get("quality"), (int, float)):
            raise UserError(f"a deploy candidate needs 'method' and a numeric 'quality': {c}")
    entries = [_weigh(c, i + 1, scenario, adapters_per_base, max_latency_overhead) for i, c in enumerate(candidates)]
    # The plain order's rule: a thinly evidenced method is never first.
    ordered = promote_leader(sorted(entries, key=lambda e: (e.excluded, -e.score, e.rank_before)),
                             lambda e: e.may_lead and not e.excluded)
    for rank, entry in enumerate(ordered, start=1):
        entry.rank = rank
        entry.explanation = _explain(entry, scenario, adapters_per_base)
    return DeployRanking(scenario, adapters_per_base, max_latency_overhead, ordered, _summary(ordered, scenario))


def _weigh(c: dict[str, Any], rank: int, scenario: str, n: int, limit: float | None) -> DeployEntry:
    facts = serving(c["method"])
    mergeable = bool(c.get("mergeable", facts.mergeable))
    merged = mergeable and (scenario == "edge" or n == 1)
    overhead = c.get("overhead_merged") if merged else c.get("overhead_unmerged")
    if overhead is None and merged:
        overhead = 1.0  # merged serving is the base architecture
    w = WEIGHTS[scenario]
    penalties = {"latency": round(w["latency"] * max(0.0, overhead - 1.0), 4) if overhead is not None else 0.0}
    base_bytes, size = c.get("base_bytes"), c.get("adapter_bytes")
    copies = n if scenario == "server" else 1
    if base_bytes and size is not None:
        penalties["storage"] = round(w["storage"] * min(1.0, copies * size / base_bytes), 4)
    forgetting = c.get("forgetting")
    if isinstance(forgetting, (int, float)):
        penalties["forgetting"] = round(w["forgetting"] * max(0.0, forgetting), 4)
    score = round(float(c["quality"]) - sum(penalties.values()), 4)
    excluded = limit is not None and overhead is not None and overhead > limit
    how = "as trained" if facts.in_place else "merged" if merged else "unmerged"
    return DeployEntry(c["method"], float(c["quality"]), score, rank, rank, how, overhead, excluded, penalties, "",
                       bool(c.get("may_lead", True)))


def _explain(e: DeployEntry, scenario: str, n: int) -> str:
    """One sentence: how serving it moved this method."""
    shared = scenario == "server" and n > 1
    if e.serving == "as trained":
        how = f"served as trained (its own weights{f', {n} tasks need {n} copies' if shared else ''})"
    elif e.serving == "merged":
        how = "served merged (no adapter at inference)"
    else:
        how = f"served unmerged{f' ({n} adapters share one base)' if shared else ''}"
    parts = [f"inference overhead x{e.overhead:.2f} costs {e.penalties['latency']:.3f}" if e.overhead is not None
             else "no inference figure, latency not weighed"]
    if "storage" in e.penalties:
        parts.append(f"storage costs {e.penalties['storage']:.3f}")
    if "forgetting" in e.penalties:
        parts.append(f"forgetting costs {e.penalties['forgetting']:.3f}")
    moved = ("kept its place" if e.rank == e.rank_before
             else f"moved {'up' if e.rank < e.rank_before else 'down'} from {e.rank_before} to {e.rank}")
    limit = "; over the latency limit, so ranked after every method within it" if e.excluded else ""
    return (f"{e.method}: {how}; {', '.join(parts)}: score {e.quality:.3f} -> {e.score:.3f}, {moved}{limit}.")


def _summary(ordered: list[DeployEntry], scenario: str) -> str:
    before = min(ordered, key=lambda e: e.rank_before)
    after = ordered[0]
    if after.method == before.method:
        return f"For {scenario} deployment the pick stays {after.method}."
    return (f"For {scenario} deployment the pick changes from {before.method} to {after.method}: "
            f"{before.explanation}")


def serving_order(ranked: list[Any], gpu: Gpu, scenario: str, max_latency_overhead: float | None,
                  adapters_per_base: int) -> tuple[list[Any], dict[str, Any]]:
    """The ranked candidates re-ordered for serving, each with a sentence on how serving moved it."""
    # Quality on the engine's own ranking scale (the risk-aware lower bound), and the plain order's rule for
    # first place: serving cost may reorder methods, but never puts a thinly evidenced one first.
    eligible = lead_rule(ranked, lambda c: c.may_lead, lambda c: c.may_lead_provisionally)
    facts = [_serving_facts(c, gpu) | {"may_lead": eligible(c)} for c in ranked]
    result = deploy_ranking(facts, scenario, max_latency_overhead=max_latency_overhead,
                            adapters_per_base=adapters_per_base)
    by_method = {c.method: c for c in ranked}
    for entry in result.entries:
        by_method[entry.method].reasons.insert(0, f"serving ({scenario}): {entry.explanation}")
    return [by_method[e.method] for e in result.entries], result.to_dict()


def _serving_facts(cand: Any, gpu: Gpu) -> dict[str, Any]:
    """Predicted serving cost of one candidate on the target card; quality on the engine's scale."""
    quality = cand.risk_score if cand.risk_score is not None else (cand.predicted_relative_quality or 1.0) - 1.0
    facts: dict[str, Any] = {"method": cand.method, "quality": quality, "adapter_bytes": cand.adapter_bytes}
    try:
        from peftbench.estimate.inference import estimate_inference

        est = estimate_inference(cand.model, cand.method, hardware=[gpu.profile])
    except Exception:  # noqa: BLE001  an encoder or a model the serving estimate cannot build: not weighed
        return facts
    answer = next(iter(est.profiles.values()))
    base = answer["base"]["decode_ms_per_token"]
    facts["base_bytes"] = est.weights_bytes.get("merged") or est.weights_bytes["unmerged"]
    facts["overhead_unmerged"] = round(answer["unmerged"]["decode_ms_per_token"] / base, 4)
    if "merged" in answer:
        facts["overhead_merged"] = round(answer["merged"]["decode_ms_per_token"] / base, 4)
    facts["overhead_source"] = "predicted"
    return facts
