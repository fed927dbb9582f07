"""`recommend(...)`: rank methods (and, without a model, pick the model) for a task and a GPU."""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftbench.errors import UserError
from peftbench.paths import check_input_dir
from peftbench.recommend.evidence import Evidence, seed_spread
from peftbench.recommend.feasibility import Cost, CostModel, resolve_gpu
from peftbench.recommend.fitting import default_evidence, fitted_model, method_catalogue
from peftbench.recommend.hparams import suggest
from peftbench.recommend.models import ModelInfo, candidate_models, model_architecture
from peftbench.recommend.predict import PROXIES, Subject, predict_quality
from peftbench.recommend.published import published_points
from peftbench.recommend.query import Limits, TaskQuery, apply_overrides, resolve_task

SMALL_DATA = 1000  # examples; the data-size rule's first step, and where seed spread is measured
UNSTABLE_FACTOR = 2.0  # "unstable": seed spread at least this multiple of the methods' median spread
FULL_SAVE_BYTES, ADAPTER_SAVE_BYTES = 2, 4  # full model saved in bf16; peft keeps adapter weights in fp32


@dataclass
class Candidate:
    model: str
    method: str
    family: str
    hyperparameters: dict[str, Any]
    predicted_relative_quality: float | None
    quality_interval: list[float] | None
    peak_bytes: int
    fits: bool
    step_seconds: float | None
    epoch_seconds: float | None
    adapter_bytes: int
    batch_size: int
    gradient_accumulation: int
    gradient_checkpointing: bool
    trainable_params: int
    quality_sources: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    would_fit_with: list[str] = field(default_factory=list)
    excluded_because: str | None = None


@dataclass
class Recommendation:
    task: dict[str, Any]
    gpu: str
    model: str
    ranking: list[Candidate]
    not_fitting: list[Candidate]
    notes: list[str]
    evidence_base: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class _Context:
    evidence: Evidence
    qmodel: Any
    methods: dict[str, dict[str, Any]]
    query: TaskQuery
    costs: CostModel
    batch_size: int
    epochs: float
    max_hours: float | None
    max_adapter_bytes: float | None
    unstable: dict[str, tuple[float, list[str]]]


def recommend(task: str, *, gpu: str | None = None, hardware: str | None = None, model: str | None = None,
              data: Path | None = None, train_examples: int | None = None, seq_len: int | None = None,
              max_hours: float | None = None, max_adapter_mb: float | None = None, top: int = 5,
              batch_size: int = 8, epochs: float = 3.0, results: Path | None = None) -> Recommendation:
    Limits(top, batch_size, epochs, max_hours, max_adapter_mb, train_examples, seq_len).validate()
    check_input_dir(results, "--results")
    for flag, value in (("--task", task), ("--gpu", gpu), ("--hardware", hardware), ("--model", model)):
        if value is not None and not value.strip():
            raise UserError(f"{flag} needs a value (see peftbench recommend --help)")
    target = resolve_gpu(gpu, hardware)  # before the evidence is read: a bad card name costs nothing
    evidence = default_evidence(results)
    query = resolve_task(task, evidence.runs, data, model)
    apply_overrides(query, train_examples, seq_len)
    costs = CostModel(target, query.kind, query.seq_len(seq_len), query.num_labels)
    ctx = _Context(evidence, fitted_model(evidence), method_catalogue(), query, costs, batch_size, epochs,
                   max_hours, max_adapter_mb * 2**20 if max_adapter_mb else None, _unstable(evidence))
    try:
        chosen, model_notes = _choose_model(ctx, model)
        candidates = [_candidate(ctx, chosen, name) for name in _methods_for(ctx, chosen)]
    finally:
        costs.flush()
    ok = sorted((c for c in candidates if c.fits and not c.excluded_because),
                key=lambda c: (-(c.predicted_relative_quality or -math.inf), c.peak_bytes))
    if ok:
        ok[0].reasons = _reasons(ctx, ok[0], ok[1:], model_notes)
    return Recommendation(
        task={"query": query.label, "kind": query.kind, "train_examples": query.train_examples,
              "mean_input_tokens": query.mean_input_tokens, "seq_len": costs.seq_len, "epochs": epochs},
        gpu=target.label, model=chosen.name, ranking=ok[:top],
        not_fitting=[c for c in candidates if not c.fits or c.excluded_because],
        notes=query.notes + model_notes + ([] if ok else ["nothing fits: see not_fitting for what would help"]),
        evidence_base={"runs": len(evidence.runs), "tasks": len(evidence.tasks()),
                       "results_hash": evidence.files_hash, "published_points": len(published_points()),
                       "quality_model": "ridge bootstrap ensemble" if ctx.qmodel else "none (fewer than 2 tasks)"})


def _unstable(evidence: Evidence) -> dict[str, tuple[float, list[str]]]:
    spreads = seed_spread(evidence.runs, SMALL_DATA)
    if len(spreads) < 2:
        return {}
    median = statistics.median(s for s, _ in spreads.values())
    return {m: v for m, v in spreads.items() if v[0] >= UNSTABLE_FACTOR * max(median, 1e-3)}


def _choose_model(ctx: _Context, model: str | None) -> tuple[ModelInfo, list[str]]:
    if model:
        arch = model_architecture(model)
        if arch is None:
            arch = _arch_from_estimate(ctx, model)
        return ModelInfo(model, arch, 0.0), []
    probe = "qlora" if ctx.costs.gpu.profile != "cpu" else "lora"
    for info in candidate_models(ctx.query.kind):
        cost = ctx.costs.search(info.name, probe, {}, ctx.batch_size)
        if cost.fits and not _too_slow(ctx, cost):
            return info, [f"model: {info.name}, the largest candidate where {probe} fits "
                          f"{ctx.costs.gpu.label}{' within --max-hours' if ctx.max_hours else ''}. Larger "
                          "pretrained models score higher after fine-tuning (Hu et al. 2021 Table 2: full FT GLUE "
                          "avg 86.4 RoBERTa-base, 88.9 RoBERTa-large, 91.1 DeBERTa-XXL); pass --model to choose"]
    raise UserError(f"no candidate model can be fine-tuned on {ctx.costs.gpu.label} with these limits")


def _arch_from_estimate(ctx: _Context, model: str) -> str:
    from peftbench.estimate.configs import load_any_config
    from peftbench.models.catalogue import architecture_family

    return architecture_family(load_any_config(model))


def _methods_for(ctx: _Context, model: ModelInfo) -> list[str]:
    """Methods that can wrap this architecture and have some evidence (own runs or published)."""
    published = {p.method for p in published_points()}
    own = set(ctx.qmodel.methods_) if ctx.qmodel else set()
    names = []
    for name, meta in ctx.methods.items():
        source = PROXIES.get(name, (name,))[0]
        if model.architecture not in meta["architectures"] or not (source in own or source in published):
            continue
        if name == "qlora" and ctx.costs.gpu.profile == "cpu":
            continue  # bitsandbytes' 4-bit layers need CUDA
        names.append(name)
    return ["full", *sorted(n for n in names if n != "full")]


def _too_slow(ctx: _Context, cost: Cost) -> bool:
    seconds = _epoch_seconds(ctx, cost)
    return bool(ctx.max_hours and seconds and seconds * ctx.epochs > ctx.max_hours * 3600)


def _epoch_seconds(ctx: _Context, cost: Cost) -> float | None:
    if cost.step_seconds is None or not ctx.query.train_examples:
        return None
    optimizer_steps = math.ceil(ctx.query.train_examples / (cost.batch_size * cost.accumulation))
    return optimizer_steps * cost.accumulation * cost.step_seconds


def _candidate(ctx: _Context, model: ModelInfo, name: str) -> Candidate:
    meta = ctx.methods[name]
    hps, hp_notes = suggest(name, meta["family"], meta["defaults"], ctx.evidence.runs, ctx.query.kind,
                            PROXIES.get(name, (None,))[0])
    cost = ctx.costs.search(model.name, name, hps, ctx.batch_size)
    subject = Subject(ctx.query.kind, model.architecture, cost.total_params or model.approx_params,
                      ctx.query.train_examples, ctx.query.mean_input_tokens, ctx.query.mean_target_tokens)
    pred = predict_quality(ctx.qmodel, ctx.evidence.runs, subject, name, meta["family"], cost.trainable_params)
    size = cost.total_params * FULL_SAVE_BYTES if name == "full" else cost.trainable_params * ADAPTER_SAVE_BYTES
    epoch = _epoch_seconds(ctx, cost)
    cand = Candidate(
        model=model.name, method=name, family=meta["family"], hyperparameters=hps,
        predicted_relative_quality=None if pred.mean is None else round(pred.mean, 4),
        quality_interval=None if pred.low is None else [round(pred.low, 4), round(pred.high, 4)],
        peak_bytes=cost.peak_bytes, fits=cost.fits, step_seconds=cost.step_seconds,
        epoch_seconds=None if epoch is None else round(epoch, 1), adapter_bytes=int(size),
        batch_size=cost.batch_size, gradient_accumulation=cost.accumulation,
        gradient_checkpointing=cost.gradient_checkpointing, trainable_params=cost.trainable_params,
        quality_sources=pred.sources, evidence=pred.evidence, warnings=pred.notes + cost.notes,
        would_fit_with=cost.would_fit_with, excluded_because=cost.not_applicable)
    cand.reasons = hp_notes
    _limits(ctx, cand)
    _stability(ctx, cand)
    return cand


def _limits(ctx: _Context, cand: Candidate) -> None:
    if cand.excluded_because:
        return
    if ctx.max_adapter_bytes and cand.adapter_bytes > ctx.max_adapter_bytes:
        cand.excluded_because = f"saved size {cand.adapter_bytes / 2**20:.1f} MiB exceeds --max-adapter-mb"
    elif ctx.max_hours and cand.epoch_seconds and cand.epoch_seconds * ctx.epochs > ctx.max_hours * 3600:
        cand.excluded_because = (f"{ctx.epochs:g} epochs take ~{cand.epoch_seconds * ctx.epochs / 3600:.1f} h, "
                                 "over --max-hours")
    elif cand.predicted_relative_quality is None:
        cand.excluded_because = "no evidence (own runs or published) to predict its quality"


def _stability(ctx: _Context, cand: Candidate) -> None:
    small = ctx.query.train_examples is not None and ctx.query.train_examples <= SMALL_DATA
    if not small:
        return
    if cand.method in ctx.unstable:
        spread, ids = ctx.unstable[cand.method]
        cand.warnings.append(
            f"unstable on small data: across seeds its score relative to full FT varies by ±{spread:.0%} on "
            f"benchmark tasks with <= {SMALL_DATA} examples (runs {', '.join(ids[:4])}); run several seeds")
    if cand.family == "soft_prompt":
        cand.warnings.append("soft-prompt methods are reported less stable (PEFT-Bench, Belanec et al. 2025, "
                             "arXiv 2511.21285)")


def _reasons(ctx: _Context, top: Candidate, rest: list[Candidate], model_notes: list[str]) -> list[str]:
    gib, gpu = top.peak_bytes / 2**30, ctx.costs.gpu
    reasons = [f"highest predicted quality among {len(rest) + 1} methods that fit: {top.predicted_relative_quality:.0%}"
               f" of full fine-tuning (80% interval {top.quality_interval[0]:.0%}-{top.quality_interval[1]:.0%})"]
    if rest and rest[0].predicted_relative_quality is not None:
        runner = rest[0]
        overlap = runner.quality_interval and runner.quality_interval[1] >= top.quality_interval[0]
        reasons.append(f"runner-up {runner.method} at {runner.predicted_relative_quality:.0%}"
                       + ("; the intervals overlap, so it is a close call" if overlap else ""))
    reasons.append(f"predicted peak {gib:.1f} GiB on {gpu.label} ({gpu.memory_bytes / 2**30:.0f} GiB)")
    if ctx.query.train_examples:
        reasons.append(f"task: ~{ctx.query.train_examples:.0f} training examples ({ctx.query.kind})")
    return reasons + top.reasons + top.warnings + model_notes[:1]
