"""Hyper-parameter suggestions: what the evidence measured best, else the measured default, said plainly."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from peftbench.recommend.evidence import Run

SWEPT = ("r", "learning_rate", "target_modules", "num_virtual_tokens", "reduction_factor")
# Published advice shown next to the suggestion (not applied: peftbench's runs have not measured it).
TIPS = {
    "reparameterization": "LoRA Without Regret (Thinking Machines 2025): LoRA on all linear layers "
                          "(target_modules='all-linear') with a learning rate ~10x full fine-tuning's "
                          "matches full FT while the data does not exceed the adapter's capacity.",
    "soft_prompt": "PEFT-Bench (Belanec et al. 2025, arXiv 2511.21285): soft-prompt methods are less stable "
                   "across seeds; Lester et al. 2021 needed large models for prompt tuning to match full FT.",
}


def _norm(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def suggest(method: str, family: str, defaults: dict[str, Any], runs: list[Run], kind: str,
            proxy: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """(hyper-parameters, notes). A value measured on several settings is chosen by mean relative quality
    on tasks of the same kind (all kinds if none); otherwise the default that the benchmark ran."""
    hps = dict(defaults)
    source = proxy or method
    own = [r for r in runs if r.method == source and r.relative is not None]
    same_kind = [r for r in own if r.kind == kind] or own
    notes: list[str] = []
    for key in SWEPT:
        if key not in hps:
            continue
        by_value: dict[Any, list[float]] = defaultdict(list)
        for run in same_kind:
            by_value[_norm(run.hyperparameters.get(key))].append(float(run.relative))
        if len(by_value) >= 2:
            best, scores = max(by_value.items(), key=lambda kv: sum(kv[1]) / len(kv[1]))
            hps[key] = list(best) if isinstance(best, tuple) else best
            notes.append(f"{key}={best}: best of {len(by_value)} measured settings "
                         f"({len(scores)} runs, mean {sum(scores) / len(scores):.0%} of full FT)")
    if not notes and own:
        measured = {k: v for k, v in own[0].hyperparameters.items() if k in SWEPT and v is not None}
        if measured:
            settings = ", ".join(f"{k}={v}" for k, v in measured.items())
            # A proxy's runs (QLoRA reads LoRA's) may have used other values than this method's defaults.
            own_defaults = {k: hps[k] for k in measured if k in hps and hps[k] != measured[k]}
            if own_defaults:
                kept = ", ".join(f"{k}={v}" for k, v in own_defaults.items())
                notes.append(f"{source}'s benchmark runs used {settings}; {method} keeps its own default {kept}"
                             "; no sweep measured yet")
            else:
                notes.append(f"the setting every benchmark run used ({settings}); no sweep measured yet")
    if hps.get("target_modules") is None and "target_modules" in hps:
        notes.append("target_modules: peft's per-architecture default (attention q/v for LoRA)")
    if family in TIPS:
        notes.append(TIPS[family])
    return hps, notes
