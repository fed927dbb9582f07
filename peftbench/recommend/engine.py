"""`recommend(...)`: every method of the registry for a task and a GPU — ranked, or listed with why not.

Quality comes from `regime.fit` over the evidence points near the query (published corpus + reference
suites, or the evidence set the user names); feasibility and cost from `peftbench.estimate`; settings from
`hparams.suggest`. A method is, in this order: not applicable (cannot wrap this model / needs CUDA), over the
GPU, over a limit (--max-hours, --max-adapter-mb), without evidence at this scale, or ranked by its lower
confidence bound. Nothing is ranked first on fewer than MIN_NEAR_FOR_FIRST comparisons in the regime, or
on comparisons from fewer than MIN_SOURCES_FOR_FIRST sources.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftbench.errors import UserError
from peftbench.method_declarations import PROXIES
from peftbench.recommend.choice import decide_candidates
from peftbench.recommend.decision import VALUE_MARGIN
from peftbench.recommend.deploy import serving_order
from peftbench.recommend.evaluate import recommender_order
from peftbench.recommend.feasibility import Cost, CostModel, Gpu, resolve_gpu, search_in_parallel
from peftbench.recommend.fitting import default_evidence, method_catalogue
from peftbench.recommend.hparams import suggest
from peftbench.recommend.models import ModelInfo, candidate_models, model_architecture
from peftbench.recommend.multi_gpu import consider_multi_gpu
from peftbench.recommend.notes import annotate, edge_notes, precision_note, small_data_notes
from peftbench.recommend.points import PointSet, cached_corpus_points, merge, own_points
from peftbench.recommend.query import Limits, TaskQuery, apply_overrides, check_budget, check_flags, resolve_task
from peftbench.recommend.regime import FIRST_PLACE_NEEDS, MIN_WEIGHT, QualityEstimate, Regime, fit, nearness, separated
from peftbench.recommend.render import RunTarget, override_line, quality_reasons, run_warnings, separation_note
from peftbench.recommend.sensitivity import cached_sweeps

FULL_SAVE_BYTES, ADAPTER_SAVE_BYTES = 2, 4  # full model saved in bf16; peft keeps adapter weights in fp32
STATUSES = ("ranked", "not applicable", "does not fit", "over a limit", "no evidence at this scale",
            "too little evidence near this query to rank first")


@dataclass
class Candidate:
    model: str
    method: str
    family: str
    status: str
    hyperparameters: dict[str, Any]
    predicted_relative_quality: float | None  # vs full FT at this regime (1.0 = on par)
    quality_interval: list[float] | None
    risk_score: float | None  # the lower confidence bound the ranking uses
    evidence_weight: float  # effective comparisons at the query
    near_comparisons: int  # comparisons in the query's regime
    peak_bytes: int
    fits: bool
    step_seconds: float | None
    epoch_seconds: float | None
    adapter_bytes: int
    batch_size: int  # micro-batch
    gradient_accumulation: int
    gradient_checkpointing: bool
    trainable_params: int
    override: str = ""  # `peftbench run` overrides reproducing these settings
    reasons: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    would_fit_with: list[str] = field(default_factory=list)
    excluded_because: str | None = None
    near_sources: int = 0  # independent sources among the comparisons in the query's regime
    may_lead: bool = False  # enough of them, from enough sources, to be ranked first (`QualityEstimate.may_lead`)
    may_lead_provisionally: bool = False  # enough of them, from one source (`QualityEstimate.may_lead_provisionally`)
    total_params: int = 0
    gpus: int = 1  # cards the step is costed on (several where it does not fit one, `multi_gpu`)
    gpu_hours: float | None = None  # of the whole training (`choice.gpu_hours`)
    learning_rate_loss: float = 0.0  # expected quality lost to an untuned rate with the tuning budget


@dataclass
class Recommendation:
    task: dict[str, Any]
    gpu: str
    model: str
    precision: str
    ranking: list[Candidate]
    not_ranked: list[Candidate]
    notes: list[str]
    evidence_base: dict[str, Any]
    separates: bool = True  # False: the best method is within the evidence's noise of the runner-up
    deploy: dict[str, Any] | None = None  # `--deploy`: the serving re-ranking and how each method moved
    no_pick_reason: str | None = None  # why nothing is ranked (no evidence to lead, or nothing fits); None if ranked
    decision: dict[str, Any] | None = None  # the pick, best quality, best value and ties (`choice.decide_candidates`)

    @property
    def not_fitting(self) -> list[Candidate]:
        return self.not_ranked

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["not_fitting"] = out["not_ranked"]  # the name older callers (report) read
        return out


def recommend(task: str, *, gpu: str | None = None, hardware: str | None = None, model: str | None = None,
              data: Path | None = None, train_examples: int | None = None, seq_len: int | None = None,
              max_hours: float | None = None, max_adapter_mb: float | None = None, top: int = 20,
              batch_size: int = 16, epochs: float = 3.0, results: Path | None = None,
              mixed_precision: str | None = None, progress: bool = False, gpus: int = 1,
              deploy: str | None = None, max_latency_overhead: float | None = None,
              adapters_per_base: int = 1, tuning_runs: int = 1, value_margin: float = 100 * VALUE_MARGIN
              ) -> Recommendation:
    Limits(top, batch_size, epochs, max_hours, max_adapter_mb, train_examples, seq_len).validate()
    check_budget(tuning_runs, value_margin)
    model = check_flags(task=task, gpu=gpu, hardware=hardware, model=model, mixed_precision=mixed_precision,
                         results=results)
    target = resolve_gpu(gpu, hardware)  # before the evidence is read: a bad card name costs nothing
    own_evidence = default_evidence(results)
    runs = own_evidence.runs
    query = resolve_task(task, runs, data, model)
    apply_overrides(query, train_examples, seq_len)
    costs = CostModel(target, query.kind, query.seq_len(seq_len), query.num_labels, mixed_precision)
    evidence = merge(cached_corpus_points(), own_points(runs))
    catalogue = method_catalogue()
    try:
        chosen, model_notes = _choose_model(costs, query, model, batch_size, epochs, max_hours)
        cands = _candidates(costs, query, chosen, catalogue, evidence, batch_size, epochs, progress)
    finally:
        costs.flush()
    scale_notes = consider_multi_gpu(cands, gpus, target, query.kind, costs.seq_len, query.num_labels)
    params = max((c.trainable_params if c.method == "full" else 0) for c in cands) or chosen.approx_params
    regime = _regime(query, chosen, params, batch_size, epochs)
    estimates = fit(evidence.points, regime)
    for cand in cands:
        _judge(cand, estimates, regime, max_hours, max_adapter_mb, epochs)
    annotate(cands, runs, query.train_examples)
    ranked = _rank(cands, estimates)
    decision = None
    if ranked:
        decision = decide_candidates(ranked, estimates, cached_sweeps(own_evidence.paths), regime, evidence.points,
                                     tuning_runs, value_margin / 100, epochs,
                                     "CPU-h" if target.profile == "cpu" else "GPU-h")
    serving = None
    if deploy is not None and ranked:
        ranked, serving = serving_order(ranked, target, deploy, max_latency_overhead, adapters_per_base)
    separates = _explain_first(ranked, estimates, regime, target, decision) if ranked else True
    notes = query.notes + model_notes + scale_notes + ([serving["summary"]] if serving else []) + \
        small_data_notes(query, epochs) + edge_notes(deploy, cands) + [
        f"regime of this query: {regime.describe()}; evidence is weighted by closeness to it",
        "precision assumed: " + precision_note(mixed_precision)]
    no_pick_reason = None
    if not ranked:
        thin = any(c.status == STATUSES[5] for c in cands)
        no_pick_reason = ("no method can be recommended: " + (f"none has the evidence to be first ({FIRST_PLACE_NEEDS})"
                                                              if thin else "none fits and applies"))
        notes.append(no_pick_reason)
    return Recommendation(
        task={"query": query.label, "kind": query.kind, "train_examples": query.train_examples,
              "mean_input_tokens": query.mean_input_tokens, "seq_len": costs.seq_len, "epochs": epochs,
              "effective_batch": batch_size},
        gpu=target.label, model=chosen.name, precision=precision_note(mixed_precision), ranking=ranked[:top],
        not_ranked=ranked[top:] + [c for c in cands if c.status != "ranked"], notes=notes,
        evidence_base={"points": len(evidence.points), "sources": evidence.sources(), "excluded": evidence.excluded},
        separates=separates, deploy=serving, no_pick_reason=no_pick_reason, decision=decision)


def _explain_first(ranked: list[Candidate], estimates: dict[str, QualityEstimate], regime: Regime, target: Gpu,
                   decision: dict[str, Any] | None) -> bool:
    """The first place's reasons (the decision's first, where it stands: a serving re-order may have moved
    another method first); whether it separates from the runner-up with evidence of its own (QLoRA's
    evidence is LoRA's, so it is no rival to LoRA)."""
    ranked[0].reasons = quality_reasons(ranked, estimates, regime, target) + ranked[0].reasons
    if decision is not None and decision["pick"] == ranked[0].method:
        ranked[0].reasons = decision["reasons"] + ranked[0].reasons
        return decision["separates"]
    first = PROXIES.get(ranked[0].method, ranked[0].method)
    runner = next((c for c in ranked[1:] if PROXIES.get(c.method, c.method) != first), None)
    if runner is None:
        return True
    separates = separated(estimates[first], estimates[PROXIES.get(runner.method, runner.method)])
    if not separates:
        ranked[0].reasons.insert(0, separation_note(ranked[0], runner))
    return separates


def _regime(query: TaskQuery, model: ModelInfo, params: float, batch: int, epochs: float) -> Regime:
    n = query.train_examples
    steps = epochs * n / batch if n else None
    return Regime(query.fine_kind, model.architecture, math.log10(params) if params else None,
                  math.log10(n) if n else None, math.log10(steps) if steps else None,
                  own_task=query.label if query.task_name else None)


def _choose_model(costs: CostModel, query: TaskQuery, model: str | None, batch: int, epochs: float,
                  max_hours: float | None) -> tuple[ModelInfo, list[str]]:
    if model:
        arch = model_architecture(model) or _arch_from_estimate(model)
        return ModelInfo(model, arch, 0.0), []
    probe = "qlora" if costs.gpu.profile != "cpu" else "lora"
    for info in candidate_models(query.kind):
        cost = costs.search(info.name, probe, {}, batch)
        seconds = _epoch_seconds(query, cost)
        if cost.fits and not (max_hours and seconds and seconds * epochs > max_hours * 3600):
            return info, [f"model: {info.name}, the largest candidate where {probe} fits {costs.gpu.label}"
                          f"{' within --max-hours' if max_hours else ''} (larger pretrained models score higher after "
                          "fine-tuning: Hu et al. 2021 Table 2); pass --model to choose"]
    raise UserError(f"no candidate model can be fine-tuned on {costs.gpu.label} with these limits")


def _arch_from_estimate(model: str) -> str:
    from peftbench.models.catalogue import architecture_family
    from peftbench.models.configs import load_any_config

    return architecture_family(load_any_config(model))


def _epoch_seconds(query: TaskQuery, cost: Cost) -> float | None:
    if cost.step_seconds is None or not query.train_examples:
        return None
    optimizer_steps = math.ceil(query.train_examples / (cost.batch_size * cost.accumulation))
    return optimizer_steps * cost.accumulation * cost.step_seconds


def _candidates(costs: CostModel, query: TaskQuery, model: ModelInfo, catalogue: dict[str, dict[str, Any]],
                evidence: PointSet, batch: int, epochs: float, progress: bool) -> list[Candidate]:
    size = model.approx_params or _probe_params(costs, model, batch)
    plans = []
    for name in ["full", *sorted(n for n in catalogue if n != "full")]:
        meta = catalogue[name]
        hps, notes = suggest(name, meta["defaults"], size, query.train_examples, model.architecture, evidence.points)
        plans.append((name, meta, hps, notes))
    todo = [(name, hps) for name, meta, hps, _ in plans if _applicable(meta, model, costs) is None
            and not costs.is_cached(model.name, name, hps, batch)]
    if todo:
        search_in_parallel(costs, model.name, todo, batch, progress)
    return [_candidate(costs, query, model, name, meta, hps, notes, batch, epochs) for name, meta, hps, notes in plans]


def _probe_params(costs: CostModel, model: ModelInfo, batch: int) -> float:
    cost = costs.search(model.name, "lora", {}, batch)
    return float(cost.total_params or 1e8)


def _run_target(costs: CostModel, query: TaskQuery, model: ModelInfo) -> RunTarget:
    from peftbench import hardware as hw

    profile = next(iter(hw.resolve([costs.gpu.profile]).values()))
    suite_task = query.label if query.task_name and "/" in query.label else None
    return RunTarget(model.name, "cpu" if profile.kind == "cpu" else "cuda", profile.precision("bf16") == "bf16",
                     suite_task)


def _applicable(meta: dict[str, Any], model: ModelInfo, costs: CostModel) -> str | None:
    if model.architecture not in meta["architectures"]:
        return (f"cannot wrap a {model.architecture} model (supports: {', '.join(meta['architectures'])})")
    return None


def _candidate(costs: CostModel, query: TaskQuery, model: ModelInfo, name: str, meta: dict[str, Any],
               hps: dict[str, Any], notes: list[str], batch: int, epochs: float) -> Candidate:
    why_not = _applicable(meta, model, costs)
    if name == "qlora" and costs.gpu.profile == "cpu":
        why_not = "needs a CUDA GPU (bitsandbytes 4-bit layers); this query is for a CPU"
    cost = (Cost(name, False, 0, None, 0, 0, batch, 1, False, not_applicable=why_not) if why_not
            else costs.search(model.name, name, hps, batch))
    saved = cost.total_params * FULL_SAVE_BYTES if name == "full" else cost.trainable_params * ADAPTER_SAVE_BYTES
    epoch = _epoch_seconds(query, cost)
    cand = Candidate(
        model=model.name, method=name, family=meta["family"], status="ranked", hyperparameters=hps,
        predicted_relative_quality=None, quality_interval=None, risk_score=None, evidence_weight=0.0,
        near_comparisons=0, peak_bytes=cost.peak_bytes, fits=cost.fits, step_seconds=cost.step_seconds,
        epoch_seconds=None if epoch is None else round(epoch, 1), adapter_bytes=int(saved),
        batch_size=cost.batch_size, gradient_accumulation=cost.accumulation,
        gradient_checkpointing=cost.gradient_checkpointing, trainable_params=cost.trainable_params,
        total_params=cost.total_params, reasons=list(notes), warnings=list(cost.notes),
        would_fit_with=cost.would_fit_with)
    if cost.not_applicable:
        cand.status, cand.excluded_because = "not applicable", cost.not_applicable
    elif not cost.fits:
        cand.status = "does not fit"
        cand.excluded_because = f"predicted peak {cost.peak_bytes / 2**30:.1f} GiB does not fit {costs.gpu.label}"
    steps = math.ceil(epochs * query.train_examples / batch) if query.train_examples else None
    target = _run_target(costs, query, model)
    cand.override = override_line(name, hps, cost, steps, costs.mixed_precision, target)
    cand.warnings += run_warnings(target, costs.mixed_precision)
    if name == "qlora":
        cand.warnings.append("quality from LoRA's evidence: QLoRA trains the same adapters on a 4-bit base "
                             "(Dettmers et al. 2023 report 16-bit parity)")
    return cand


def _judge(cand: Candidate, estimates: dict[str, QualityEstimate], regime: Regime, max_hours: float | None,
           max_adapter_mb: float | None, epochs: float) -> None:
    est = estimates.get(PROXIES.get(cand.method, cand.method))
    full = estimates.get("full")
    if est is not None:
        base = full.effect if full is not None and full.evidenced else 0.0
        cand.predicted_relative_quality = round(1.0 + est.effect - base, 4)
        half = 1.2816 * est.se
        cand.quality_interval = [round(cand.predicted_relative_quality - half, 4),
                                 round(cand.predicted_relative_quality + half, 4)]
        cand.risk_score = round(est.lcb, 4)
        cand.evidence_weight, cand.near_comparisons = round(est.weight, 2), est.near
        cand.near_sources, cand.may_lead = est.near_sources, est.may_lead
        cand.may_lead_provisionally = est.may_lead_provisionally
        cand.evidence = [f"(weight {w:.2f}: {nearness(p, regime)}) {p.cite}" for w, p in est.nearest]
    if cand.status != "ranked":
        return
    if max_adapter_mb and cand.adapter_bytes > max_adapter_mb * 2**20:
        cand.status, cand.excluded_because = "over a limit", (
            f"saved size {cand.adapter_bytes / 2**20:.1f} MiB exceeds --max-adapter-mb {max_adapter_mb:g}")
    elif max_hours and cand.epoch_seconds and cand.epoch_seconds * epochs > max_hours * 3600:
        cand.status, cand.excluded_because = "over a limit", (
            f"{epochs:g} epochs take ~{cand.epoch_seconds * epochs / 3600:.1f} h, over --max-hours {max_hours:g}")
    elif est is None or est.weight < MIN_WEIGHT:
        weight = 0.0 if est is None else est.weight
        cand.status = "no evidence at this scale"
        cand.excluded_because = (f"no evidence at this scale: {weight:.2f} effective comparisons near this query "
                                 f"(needs {MIN_WEIGHT:g})" + ("; nearest evidence below" if cand.evidence else
                                                              "; no published or reference comparison at all"))


def _rank(cands: list[Candidate], estimates: dict[str, QualityEstimate]) -> list[Candidate]:
    ok = {c.method: c for c in cands if c.status == "ranked"}
    proxied = {m: estimates[PROXIES.get(m, m)] for m in ok if PROXIES.get(m, m) in estimates}
    order = recommender_order(list(ok), proxied)
    ranked = [ok[m] for m in order]
    if ranked and not ranked[0].may_lead and ranked[0].may_lead_provisionally:
        ranked[0].warnings.insert(0, f"provisional first place: its {ranked[0].near_comparisons} comparisons in this "
                                     "regime come from one source, and no method has them from two; one paper's "
                                     "protocol decides this order, so measure before committing")
    elif ranked and not ranked[0].may_lead:
        # Nothing qualifies to be first: nothing is ranked; each says how much evidence it has.
        for c in ranked:
            c.status = STATUSES[5]
            c.excluded_because = (f"{c.near_comparisons} comparison(s) near this query from {c.near_sources} "
                                  f"independent source(s); {FIRST_PLACE_NEEDS}")
        return []
    return ranked
