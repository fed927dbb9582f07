"""Traces fitted over batch size and sequence length, so that any shape is answered without tracing.

For one model and method the traced step runs the same ops at every shape, and the bytes live after each
op are exact polynomials in the shape: weights, gradients and optimizer states do not depend on it,
activations and temporaries grow with the batch b and at most with the square of the sequence length s.
So every number is fitted as A + b·(c0 + c1·s + c2·s²) from four anchor traces, (2, 128), (2, 256),
(2, 512) and (4, 128): FLOPs and bytes moved, and the live bytes after each op that could be a phase's
peak at some shape (the op at which memory peaks moves with the shape: a full fine-tune peaks late in
backward with few tokens, early with many). Fits are made per traced depth and combined like traces
(`core.combine_depths`).

Every fit is checked against the tracing path at three shapes that are not anchors, (16, 64), (1, 1024)
and (2, 8192), capped at the model's position limit, and is used only within the sequence lengths
checked without a miss. This module imports neither torch nor transformers: evaluating a fit is the cold path
of `estimate`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from peftbench.estimate.tracer_math import CANDIDATE_TOKENS, CATEGORIES, FIXED

# Batch 1 runs a few ops fewer than larger batches (broadcast reductions are skipped): anchors use 2 and 4,
# and a check at batch 1 bounds what that costs.
ANCHORS = ((2, 128), (2, 256), (2, 512), (4, 128))
CHECKS = ((16, 64), (1, 1024), (2, 8192))
# Largest relative errors at the checks. FLOPs get more room: whether a small matmul counts as compute- or
# memory-bound (`tracer.LOW_INTENSITY`) flips with the shape, a step no polynomial follows (~1% of the
# FLOPs of a LoRA step on GPT-2 at 16 x 64); the roofline's own error is far larger.
MEMORY_TOLERANCE = 0.01
FLOPS_TOLERANCE = 0.03
_SCALARS = ("matmul_bytes", "other_bytes", "kernels", "logits_bytes")


class ShapeDependentTrace(Exception):
    """The traced ops differ between anchor shapes: the step cannot be fitted."""


# ---- fitting -----------------------------------------------------------------------------------------
def coefficients(values: list[float]) -> list[float]:
    """[A, c0, c1, c2] of A + b·(c0 + c1·s + c2·s²) through the values at the four ANCHORS."""
    (b1, s1), (_, s2), (_, s3), (b4, _) = ANCHORS
    per_batch = (values[3] - values[0]) / (b4 - b1)
    constant = values[0] - b1 * per_batch
    g0, g1, g2 = per_batch, (values[1] - constant) / b1, (values[2] - constant) / b1
    d1 = (g1 - g0) / (s2 - s1)  # Newton's divided differences of the quadratic through (s_i, g_i)
    c2 = ((g2 - g1) / (s3 - s2) - d1) / (s3 - s1)
    c1 = d1 - c2 * (s1 + s2)
    c0 = g0 - c1 * s1 - c2 * s1 * s1
    return [_short(v) for v in (constant, c0, c1, c2)]


def _short(value: float) -> float | int:
    """12 significant digits (bytes stay exact below 10^12) and ints where exact: keeps the file small."""
    value = float(f"{value:.12g}")
    return int(value) if value.is_integer() else value


def _value(coefs: list[float], b: int, s: int) -> float:
    a, c0, c1, c2 = coefs
    return a + b * (c0 + c1 * s + c2 * s * s)


def fit_depth(anchor_traces: list[Any]) -> dict[str, Any]:
    """Fit one traced depth from its four anchor `TraceResult`s (with events)."""
    import numpy as np

    first = anchor_traces[0]
    flops = {dt: coefficients([float(t.flops.get(dt, 0.0)) for t in anchor_traces]) for dt in first.flops}
    out: dict[str, Any] = {"trainable_params": first.trainable_params, "total_params": first.total_params,
                           "flops": flops, "notes": first.notes, "phases": {}}
    for name in _SCALARS:
        out[name] = coefficients([float(getattr(t, name)) for t in anchor_traces])
    for phase in first.events:
        matrices = [t.events[phase] for t in anchor_traces]
        if len({m.shape for m in matrices}) != 1:
            raise ShapeDependentTrace(f"{phase}: {[m.shape[0] for m in matrices]} ops at the anchors")
        rows: set[int] = set()
        for (b, s), matrix in zip(ANCHORS, matrices, strict=True):
            rows |= set(_would_be_peak_rows(matrix.astype(float), b * s))
        stacked = np.stack(matrices)  # anchor x op x category
        out["phases"][phase] = [[coefficients(stacked[:, r, c].tolist()) for c in range(len(CATEGORIES))]
                                for r in sorted(rows)]
    return out


def _would_be_peak_rows(matrix, tokens: int) -> list[int]:
    """The ops that would peak for each count in CANDIDATE_TOKENS (see `tracer_math.would_be_peaks`)."""
    fixed, variable = _split(matrix)
    return [int((fixed + variable * (t / tokens)).argmax()) for t in CANDIDATE_TOKENS]


def _split(matrix):
    fixed = matrix[:, [CATEGORIES.index(c) for c in FIXED]].sum(axis=1)
    return fixed, matrix.sum(axis=1) - fixed


# ---- evaluating --------------------------------------------------------------------------------------
def _depth_trace(fitted: dict[str, Any], b: int, s: int) -> dict[str, Any]:
    trace: dict[str, Any] = {"trainable_params": fitted["trainable_params"], "total_params": fitted["total_params"],
                             "notes": list(fitted["notes"]), "phases": {},
                             "flops": {dt: max(0.0, _value(c, b, s)) for dt, c in fitted["flops"].items()}}
    for name in _SCALARS:
        trace[name] = max(0, round(_value(fitted[name], b, s))) if name in ("kernels", "logits_bytes") \
            else max(0.0, _value(fitted[name], b, s))
    fixed_cols = [CATEGORIES.index(c) for c in FIXED]
    for phase, ops in fitted["phases"].items():
        rows = [[max(0, round(_value(c, b, s))) for c in op] for op in ops]
        split = [(sum(r[i] for i in fixed_cols), sum(r)) for r in rows]
        peak = max(rows, key=sum)
        candidates = {}
        for t in CANDIDATE_TOKENS:
            scale = t / (b * s)
            best = max(range(len(rows)), key=lambda i: split[i][0] + (split[i][1] - split[i][0]) * scale)
            candidates[str(t)] = dict(zip(CATEGORIES, rows[best], strict=True))
        trace["phases"][phase] = {**dict(zip(CATEGORIES, peak, strict=True)), "peak": sum(peak),
                                  "candidates": candidates}
    return trace


def evaluate(fitted: dict[str, Any], batch_size: int, seq_len: int) -> dict[str, Any]:
    """The trace the fit predicts at (batch_size, seq_len): what `core.traced` would return."""
    from peftbench.estimate.core import combine_depths

    per_depth = [_depth_trace(f, batch_size, seq_len) for f in fitted["per_depth"]]
    return combine_depths(per_depth, fitted["layers"], fitted["traced"])


def check_error(fitted: dict[str, Any], exact: dict[str, Any], batch_size: int, seq_len: int) -> tuple[float, float]:
    """Relative errors of the fit against a trace: the largest over phase peaks, and total FLOPs."""
    predicted = evaluate(fitted, batch_size, seq_len)
    memory = max(abs(predicted["phases"][p]["peak"] - e["peak"]) / e["peak"] for p, e in exact["phases"].items()
                 if e["peak"])
    flops = sum(exact["flops"].values())
    return memory, abs(sum(predicted["flops"].values()) - flops) / flops if flops else 0.0


def max_positions(config) -> int | None:
    """Longest sequence the model's position table allows; None where positions are relative."""
    for key in ("max_position_embeddings", "n_positions", "max_positions"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def build(config, method, hyperparameters: dict[str, Any], task_kind: str, shape) -> dict[str, Any]:
    """Trace the anchors at each traced depth, fit, and check against the tracing path.

    `shape` gives everything but the batch size and sequence length. Returns {"fit": …, "checked":
    [[b, s, memory error, FLOPs error], …], "seq_range": [shortest s, longest s] of the checks that
    passed, from the shortest up to the first miss, "max_error" (memory) and "max_flops_error" over
    them}; `seq_range` is None when the shortest check missed: the fit must not be used.
    """
    from peftbench.estimate.build import depth_of, with_depth
    from peftbench.estimate.core import traced, traced_depths
    from peftbench.estimate.trace import trace_step

    depths = traced_depths(config)
    configs = [config] if len(depths) == 1 else [with_depth(config, d) for d in depths]
    per_depth = []
    for cfg in configs:
        anchors = [trace_step(cfg, method, hyperparameters, task_kind, replace(shape, batch_size=b, seq_len=s),
                              keep_events=True) for b, s in ANCHORS]
        per_depth.append(fit_depth(anchors))
    fitted = {"per_depth": per_depth, "layers": depth_of(config), "traced": depths}
    limit = max_positions(config) or CHECKS[-1][1]
    checked = []
    for b, s in CHECKS:
        s = min(s, limit)
        exact = traced(config, method, hyperparameters, task_kind, replace(shape, batch_size=b, seq_len=s))
        checked.append([b, s, *(round(e, 6) for e in check_error(fitted, exact, b, s))])
    # Usable from the shortest check up to the last one that passed before any miss: Phi-3's sliding
    # window (2047) changes its attention beyond it, so its 4096 check misses and its fits stop at 1024.
    passed = []
    for c in sorted(checked, key=lambda c: c[1]):
        if c[2] > MEMORY_TOLERANCE or c[3] > FLOPS_TOLERANCE:
            break
        passed.append(c)
    memory, flops = (max((c[i] for c in passed), default=0.0) for i in (2, 3))
    return {"fit": fitted, "checked": checked, "max_error": memory, "max_flops_error": flops,
            "seq_range": [passed[0][1], passed[-1][1]] if passed else None}
