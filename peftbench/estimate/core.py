"""Depth-extrapolated, cached traces, turned into per-device memory and per-profile step time.

Deep models are traced at 2 and 3 layers (4 and 6 where layer types alternate, as in Gemma-2) and
extrapolated linearly in depth, per phase and per memory category: everything a layer adds (weights,
states, saved tensors, FLOPs) is the same for every layer, and what is not per-layer (embeddings, head,
logits) is the intercept. Tests and benchmarks/estimator_accuracy.py check this against exact traces.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from peftbench.cache import cache_root, computed_with, key_of, read_json, write_json_atomic
from peftbench.versions import ESTIMATOR_VERSION

if TYPE_CHECKING:  # the trace module imports torch; this module must stay cheap to import
    from peftbench.estimate.trace import Shape

EXACT_UP_TO = 6  # layers: shallower models are traced whole
CPU_OVERHEAD_BYTES = 24_000_000  # RSS beyond tensors: libtorch code pages a step
# faults in (~22-23 MB in smaps), calibrated in benchmarks/estimator_accuracy.md


def _cache_key(config, method, hp: dict[str, Any], task_kind: str, shape: Shape) -> str:
    from peftbench.models.config_identity import canonical_config

    return key_of(ESTIMATOR_VERSION, canonical_config(config.to_dict()), method.name, method.version, hp, task_kind,
                  asdict(shape))


def traced(config, method, hp: dict[str, Any], task_kind: str, shape: Shape, use_cache: bool = True) -> dict:
    """The (extrapolated) trace of one step as a JSON-able dict, from the disk cache when possible."""
    path = cache_root() / "estimates" / f"{_cache_key(config, method, hp, task_kind, shape)}.json"
    cached = read_json(path) if use_cache else None
    if cached is not None:
        return cached
    result = _trace_extrapolated(config, method, hp, task_kind, shape)
    result["computed_with"] = computed_with()
    if use_cache:
        write_json_atomic(path, result)
    return result


def _trace_extrapolated(config, method, hp, task_kind: str, shape: Shape, exact: bool = False) -> dict:
    import logging

    from peftbench.estimate.build import depth_of, with_depth
    from peftbench.estimate.trace import trace_step

    # torch logs a traceback for a failed fake-tensor op even when the caller handles the error (a method
    # that cannot wrap a model); set after the import above, where torch configures its loggers.
    logging.getLogger("torch._subclasses.fake_tensor").setLevel(logging.CRITICAL)

    depths = traced_depths(config, exact)
    configs = [config] if len(depths) == 1 else [with_depth(config, d) for d in depths]
    results = [asdict(trace_step(c, method, hp, task_kind, shape)) for c in configs]
    return combine_depths(results, depth_of(config), depths)


def traced_depths(config, exact: bool = False) -> list[int]:
    """The depths to trace: the whole model when shallow or irregular, else two and three layer periods.

    Not one and two: a one-layer stack can peak at another op than any deeper one (Phi-3-mini with LoKr at
    1 x 512 peaks at the loss with one layer, at the last layer's activations with two or more), and
    extrapolating from it missed the 32-layer trace by -20%; from two and three layers it is exact.
    """
    from peftbench.estimate.build import depth_of, depth_uniform

    depth = depth_of(config)
    period = layer_period(config)
    if exact or depth <= max(EXACT_UP_TO, 3 * period) or not depth_uniform(config):
        return [depth]
    return [2 * period, 3 * period]


def combine_depths(results: list[dict], depth: int, depths: list[int]) -> dict:
    """One trace per traced depth (`traced_depths`) -> the trace of the whole model."""
    for r in results:
        r.pop("events", None)
    if len(results) == 1:
        return {**results[0], "depth": {"layers": depth, "traced": depths}}
    lo, hi = results
    result = _linear(lo, hi, (depth - depths[0]) / (depths[1] - depths[0]))
    for numbers in result["phases"].values():
        _raise_to_candidates(numbers)
    result["notes"] = sorted(set(lo["notes"]) | set(hi["notes"]))
    result["depth"] = {"layers": depth, "traced": depths}
    return result


def _raise_to_candidates(numbers: dict[str, Any]) -> None:
    """Where the two traced depths peak at different events (late vs early backward), the extrapolated
    peak mixes them and can fall short of a real event: take the largest extrapolated candidate instead
    (measured: Llama-3.1-8B full fine-tune at 4 × 384, backward 60.5 GB extrapolated vs 64.3 GB traced
    at full depth; with the candidates, 64.3 GB)."""
    # A candidate whose events at the two traced depths are not the same event extrapolates to nonsense,
    # such as negative gradients (BERT-base full at 32 x 128: 3.31 GiB, gradients -0.59 GiB, against
    # 1.85 GiB traced at full depth): a real event has no negative bytes in any category.
    candidates = [c for c in (numbers.get("candidates") or {}).values() if min(c.values(), default=0) >= 0]
    best = max(candidates, key=lambda c: sum(c.values()), default=None)
    if best is not None and sum(best.values()) > numbers["peak"]:
        numbers.update(best)
        numbers["peak"] = sum(best.values())


def layer_period(config) -> int:
    """Smallest repeat of the per-layer pattern (`layer_types`), so that traced stacks are whole periods."""
    types = getattr(config, "layer_types", None)
    if not isinstance(types, list) or not types:
        return 1
    return next(p for p in range(1, len(types) + 1) if all(types[i] == types[i % p] for i in range(len(types))))


def _linear(lo: Any, hi: Any, steps: float) -> Any:
    """lo + (hi - lo) * steps, through nested dicts; ints stay ints."""
    if isinstance(lo, dict):
        return {k: _linear(lo.get(k, 0), hi.get(k, 0), steps) for k in set(lo) | set(hi)}
    if isinstance(lo, (int, float)) and not isinstance(lo, bool):
        value = lo + (hi - lo) * steps
        return round(value) if isinstance(lo, int) and isinstance(hi, int) else float(value)
    return hi


# ---- memory per device -------------------------------------------------------------------------------
def device_memory(trace: dict, kind: str) -> dict[str, Any]:
    """Peak bytes as the device's allocator sees it, the phase where it happens and its breakdown.

    CUDA: max_memory_reserved-like: the traced allocations at the peak phase (what torch counts as
    allocated, cuBLAS's workspaces included), plus what the caching allocator reserves beyond them:
    a share of the peak and a share of the fp32 logits, the step's largest single block, which often
    cannot reuse freed blocks (fitted on an H100, benchmarks/estimator_accuracy_gpu.md). The CUDA
    context is not in the allocator and is added by `fits`. CPU: the resident-set increase, traced
    tensors plus a calibrated runtime overhead.
    """
    phase, numbers = max(trace["phases"].items(), key=lambda kv: kv[1]["peak"])
    breakdown = {k: int(v) for k, v in numbers.items() if k not in ("peak", "candidates")}
    breakdown["overhead"] = _reserved_beyond(trace, numbers["peak"], 1.0) if kind == "cuda" else CPU_OVERHEAD_BYTES
    return {"peak_bytes": sum(breakdown.values()), "peak_phase": phase, "breakdown": breakdown}


def _reserved_beyond(trace: dict, peak: float, scale: float) -> int:
    """CUDA bytes beyond the traced peak, with activations and logits scaled by `scale` (`max_scale`)."""
    from peftbench.hardware import allocator

    alloc = allocator()
    return int(peak * alloc["fragmentation"] + trace.get("logits_bytes", 0) * scale * alloc["logits_factor"]
               + alloc["cublas_workspace_bytes"])


def max_scale(trace: dict, kind: str, budget: int) -> float:
    """Largest factor on the batch (or, linearly, the sequence) that keeps the peak within `budget`.

    Saved activations and forward/backward temporaries scale with the number of tokens, as do the
    logits; weights, gradients, optimizer states and the optimizer step's temporaries do not.
    """
    from peftbench.hardware import allocator

    alloc = allocator()
    frag = alloc["fragmentation"] if kind == "cuda" else 0.0
    fixed_extra = alloc["cublas_workspace_bytes"] if kind == "cuda" else CPU_OVERHEAD_BYTES
    per_scale_extra = trace.get("logits_bytes", 0) * alloc["logits_factor"] if kind == "cuda" else 0.0
    best = float("inf")
    for phase, n in trace["phases"].items():
        variable = n["activations"] + n["temporaries"] if phase != "optimizer" else 0
        fixed = n["peak"] - variable
        room = budget - fixed_extra - fixed * (1 + frag)
        if room < 0:
            return 0.0
        growth = variable * (1 + frag) + per_scale_extra
        if growth > 0:
            best = min(best, room / growth)
    return best


# ---- step time --------------------------------------------------------------------------------------
_DTYPE_NAMES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def step_seconds(trace: dict, profile) -> float:
    """Roofline: matmul FLOPs at the profile's peak for their dtype, other traffic at its bandwidth,
    plus a per-kernel gap; each scaled by an efficiency factor (see hardware/profiles.json)."""
    eff = profile.efficiency
    compute = sum(flops / (profile.peak_flops(_DTYPE_NAMES.get(dt, "fp32")) * eff["matmul"])
                  for dt, flops in trace["flops"].items())
    memory = trace["other_bytes"] / (profile.bandwidth_gbs * 1e9 * eff["bandwidth"])
    return compute + memory + trace["kernels"] * eff["kernel_seconds"]
