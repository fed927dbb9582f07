"""Words of the answer: the `peftbench run` override line, the top pick's reasons, the separation note."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from peftbench.recommend.regime import FIRST_PLACE_NEEDS, QualityEstimate, Regime, lead_rule

if TYPE_CHECKING:
    from peftbench.recommend.engine import Candidate
    from peftbench.recommend.feasibility import Cost, Gpu

METHOD_KEYS = ("r", "lora_alpha", "alpha", "target_modules", "num_virtual_tokens", "reduction_factor",
               "oft_block_size", "boft_block_size")


def _yaml(value: Any) -> str:
    """A value as one command-line token that `peftbench run` parses back to the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_yaml(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class RunTarget:
    """Where the suggested settings run: the model as `peftbench run` loads it, the device, what precision the
    card trains in, and the suite and task when the query named a benchmarked one."""

    model: str
    device: str  # "cuda" or "cpu"
    bf16: bool = True  # the card computes in bf16 (a T4 does not)
    suite_task: str | None = None  # "suite/task"


def runnable_model(model: str) -> str:
    """A preset is a transcribed config, not weights: `peftbench run` loads its hub id (a packaged model, whose
    weights ship in a registry package, keeps its name)."""
    from peftbench.models.catalogue import CATALOGUE
    from peftbench.models.configs import preset_for, preset_index

    if model in CATALOGUE:
        return model
    preset = preset_for(model)
    return preset_index()[preset.name]["hub_id"] if preset is not None else model


def override_line(method: str, hps: dict[str, Any], cost: Cost, steps: int | None, mixed: str | None,
                  target: RunTarget) -> str:
    """The `peftbench run` command that reproduces the suggested settings (train.learning_rate bypasses the
    suites' lr_multiplier, so the CPU schedule's x4 never applies)."""
    suite, _, task = (target.suite_task or "").partition("/")
    parts = ["peftbench run", f"suite={suite} tasks=[{task}]" if task else "suite=YOUR_SUITE",
             f"model={runnable_model(target.model)}"]
    if target.device == "cuda":
        parts.append("device=cuda")
    parts.append(f"methods=[{method}]")
    parts += [f"methods.{method}.{k}={_yaml(hps[k])}" for k in METHOD_KEYS if hps.get(k) is not None]
    parts.append(f"train.learning_rate={hps['learning_rate']:g}")
    parts.append(f"train.batch_size={cost.batch_size}")
    parts.append(f"train.gradient_accumulation_steps={cost.accumulation}")
    parts.append(f"train.gradient_checkpointing={_yaml(cost.gradient_checkpointing)}")
    parts.append("train.dtype=fp32" if mixed or target.device == "cpu" else
                 "train.dtype=bf16" if target.bf16 else "train.dtype=fp16")
    if steps:
        parts.append(f"train.max_steps={steps}")  # optimizer steps: epochs x examples / effective batch
    return " ".join(parts)


def run_warnings(target: RunTarget, mixed: str | None) -> list[str]:
    """What the printed `run:` line does not do as the estimate assumed, said beside it."""
    out = []
    if not target.suite_task:
        out.append("run: YOUR_SUITE is a suite with your data: `peftbench pilot --data FILE` writes one (and measures "
                   "the top candidates on it), or see docs/guide/own-data.md; the other settings run as printed")
    if target.device == "cuda" and not target.bf16 and not mixed:
        out.append("this card has no bf16: the run line trains in fp16, which `peftbench run` does without loss "
                   "scaling; prefer fp32 (train.dtype=fp32, about twice the weights' memory) if losses go to nan")
    return out


def quality_reasons(ranked: list[Candidate], estimates: dict[str, QualityEstimate], regime: Regime,
                    gpu: Gpu) -> list[str]:
    top = ranked[0]
    # The first place has a quality estimate: its predicted quality, set with the interval, is formatted below.
    assert top.quality_interval is not None
    # Methods predicted higher that may not lead (too few comparisons here, or one source's word).
    could_lead = lead_rule(ranked, lambda c: c.may_lead, lambda c: c.may_lead_provisionally)
    above = [c for c in ranked[1:] if not could_lead(c)
             and (c.predicted_relative_quality or 0.0) > (top.predicted_relative_quality or 0.0)]
    reasons = [("highest predicted quality among the methods with the evidence to lead; the others follow by "
                if top.may_lead else "no method has comparisons in this regime from two sources: highest ")
               + "risk-aware score (lower 90% bound)" + ("" if top.may_lead else
                                                          " among those with enough from one") + ": predicted "
               f"{top.predicted_relative_quality:.0%} of full FT (80% interval {top.quality_interval[0]:.0%}-"
               f"{top.quality_interval[1]:.0%}), from {top.evidence_weight:.1f} effective comparisons, "
               f"{top.near_comparisons} of them in this regime from {top.near_sources} independent source(s) "
               f"({FIRST_PLACE_NEEDS})"]
    reasons += [f"{c.method} is predicted higher ({c.predicted_relative_quality:.0%} vs "
                f"{top.predicted_relative_quality:.0%}) but may not lead: "
                f"{c.near_comparisons} comparison(s) in this regime from {c.near_sources} independent source(s)"
                for c in above]
    # The first runner-up with evidence of its own (QLoRA's is LoRA's).
    runner = next((c for c in ranked[1:] if {c.method, top.method} != {"lora", "qlora"}), None)
    if runner is not None and runner.method not in {c.method for c in above}:  # else named just above
        reasons.append(f"runner-up {runner.method}: {runner.predicted_relative_quality:.0%} "
                       f"({runner.evidence_weight:.1f} effective comparisons)")
    reasons.append(f"predicted peak {top.peak_bytes / 2**30:.1f} GiB on {gpu.label} ({gpu.memory_bytes / 2**30:.0f} "
                   f"GiB), micro-batch {top.batch_size} x {top.gradient_accumulation} accumulation = effective batch "
                   f"{top.batch_size * top.gradient_accumulation}"
                   + (", gradient checkpointing" if top.gradient_checkpointing else ""))
    return reasons


def separation_note(top: Candidate, runner: Candidate) -> str:
    return (f"no method separates: {top.method} and {runner.method} are within the evidence's noise of each other "
            "here (difference below the 90% bound); choose between them by cost")
