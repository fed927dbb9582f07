"""Canaries: do the installed torch, transformers and peft still trace what the shipped fits say?

Shipped fits and cached answers are keyed by what they mean, not by library versions (`peftbench.cache`), so a
library release is used with them as it is. Whether the release changed a traced answer is checked here: a
handful of shipped fits — one method of each family and peftbench's own layer code on one small preset, and
LoRA on a Llama, a Mistral and a Gemma-2 preset (alternating layer types) — are evaluated at a shape that is
no anchor and compared with a fresh trace by the installed libraries. `peftbench doctor` prints the verdict;
`tests/test_shape_fit.py` asserts it; CI runs it under the lock and under the newest versions the ranges allow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peftbench.estimate.shape_fit import FLOPS_TOLERANCE

# Within these of a fresh trace a fit is still valid: the fits' own check tolerance for memory (a fit misses
# a trace by < 0.01% where nothing drifted), and the FLOP tolerance of `shape_fit` (a matmul's compute- or
# memory-bound call flips with the shape).
PEAK_TOLERANCE = 0.005
CANARY_SHAPE: dict[str, Any] = {"batch_size": 3, "seq_len": 700}  # no anchor, no check shape of `shape_fit`
FAMILY_CANARIES = ("full", "lora", "adalora", "adapter", "ia3", "bitfit", "prompt_tuning")
CANARIES: tuple[tuple[str, str], ...] = (
    *(("qwen2.5-0.5b", m) for m in FAMILY_CANARIES),
    ("llama-3.2-1b", "lora"), ("mistral-7b", "lora"), ("gemma-2-2b", "lora"))
REBUILD = ("python -m peftbench.estimate.ship_fits --rebuild, then python benchmarks/recommender_track_record.py "
           "--ship")


@dataclass
class CanaryResult:
    model: str
    method: str
    fit_peak: int | None  # None: shipped as not applicable
    traced_peak: int | None  # None: today's code finds it not applicable
    peak_drift: float  # relative; 1.0 where one side is not applicable and the other is
    flops_drift: float
    computed_with: dict[str, str]

    @property
    def holds(self) -> bool:
        return self.peak_drift <= PEAK_TOLERANCE and self.flops_drift <= FLOPS_TOLERANCE


def check(model: str, method: str) -> CanaryResult:
    """The shipped fit of (model, method) at its default setting against a fresh trace at `CANARY_SHAPE`.
    Raises LookupError when no fit of this estimator version ships for it."""
    import warnings

    from peftbench.errors import MethodNotApplicable
    from peftbench.estimate.api import estimate_config
    from peftbench.estimate.front_cache import load_fit
    from peftbench.estimate.shape_fit import evaluate
    from peftbench.estimate.ship_fits import SETTING
    from peftbench.models.configs import load_any_config

    entry = load_fit(model, method, SETTING, "cuda")
    if entry is None:
        raise LookupError(f"no shipped fit for {model} {method}: rebuild with {REBUILD}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fresh = estimate_config(load_any_config(model), model, method, **CANARY_SHAPE, hardware=["a100-80gb"])
        except MethodNotApplicable:
            fresh = None
    versions = entry.get("computed_with", {})
    if "not_applicable" in entry or fresh is None:
        agree = "not_applicable" in entry and fresh is None
        return CanaryResult(model, method, None, None if fresh is None else fresh.peak_bytes,
                            0.0 if agree else 1.0, 0.0 if agree else 1.0, versions)
    from peftbench.estimate.core import device_memory

    fitted = evaluate(entry["fit"], CANARY_SHAPE["batch_size"], CANARY_SHAPE["seq_len"])
    fit_peak = device_memory(fitted, "cuda")["peak_bytes"]
    fit_flops = float(sum(fitted["flops"].values()))
    return CanaryResult(model, method, fit_peak, fresh.peak_bytes, abs(fit_peak - fresh.peak_bytes) / fresh.peak_bytes,
                        abs(fit_flops - fresh.flops_per_step) / max(fresh.flops_per_step, 1.0), versions)


def verdict(results: list[CanaryResult]) -> str:
    """One line: still valid, or how far the worst canary drifted and how to rebuild."""
    worst = max(results, key=lambda r: (not r.holds, r.peak_drift))
    if all(r.holds for r in results):
        return (f"still valid: {len(results)} of {len(results)} canaries within {PEAK_TOLERANCE:.1%} of a fresh "
                f"trace (largest peak drift {worst.peak_drift:.3%})")
    drifted = [r for r in results if not r.holds]
    return (f"drifted by {worst.peak_drift:.1%} on peak memory ({worst.model} {worst.method}; {len(drifted)} of "
            f"{len(results)} canaries off): the installed libraries trace differently from the shipped fits; "
            f"rebuild with {REBUILD}")
