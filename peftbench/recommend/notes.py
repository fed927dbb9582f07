"""What an answer says beside its ranking: little data, an edge device with a large base, methods unstable across
seeds on small data, the precision assumed, and forgetting (`forgetting_evidence`), a cost the quality
prediction leaves out."""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING, Any

from peftbench.method_declarations import PROXIES
from peftbench.recommend.evidence import seed_spread
from peftbench.recommend.forgetting_evidence import cached_forgetting_gaps, forgetting_reasons

if TYPE_CHECKING:
    from peftbench.recommend.engine import Candidate
    from peftbench.recommend.query import TaskQuery

SMALL_DATA = 1000  # examples: where seed spread is measured and warned about


def small_data_notes(query: TaskQuery, epochs: float) -> list[str]:
    """Little data changes the advice, and the answer says how."""
    n = query.train_examples
    if not n or n >= SMALL_DATA:
        return []
    return [f"{n:,.0f} training examples is little: methods with few trainable parameters ((IA)3, LoRA at r=8, "
            "prompt tuning) are less prone to overfit it, and T-Few (Liu et al. 2022) trains (IA)3 for 1,000 steps "
            f"on 20-70 examples, so {epochs:g} epochs ({math.ceil(epochs * n / 16):,} steps at batch 16) may be "
            "too few: raise --epochs, and run several seeds (small-data runs vary by seed)"]


EDGE_PARAMS = 3e9  # beyond this a base model is a poor fit for an edge device (phones, laptops, embedded GPUs)


def edge_notes(deploy: str | None, cands: list[Candidate]) -> list[str]:
    total = max((c.total_params for c in cands), default=0)
    if deploy != "edge" or total <= EDGE_PARAMS:
        return []
    return [f"--deploy edge with a {total / 1e9:.1f}B-parameter base: about {2 * total / 2**30:.0f} GiB in bf16 and "
            f"{0.56 * total / 2**30:.0f} GiB at 4 bits before any activation; edge devices usually hold a 0.5-3B "
            "model: consider --model qwen2.5-1.5b or llama-3.2-3b (peftbench models lists the presets)"]


def unstable_methods(runs: list) -> dict[str, tuple[float, list[str]]]:
    """Methods whose seed spread on small benchmark tasks is at least twice the methods' median spread."""
    spreads = seed_spread(runs, SMALL_DATA)
    if len(spreads) < 2:
        return {}
    median = statistics.median(s for s, _ in spreads.values())
    return {m: v for m, v in spreads.items() if v[0] >= 2.0 * max(median, 1e-3)}


def precision_note(mixed: str | None) -> str:
    if mixed:
        return (f"{mixed} autocast with fp32 master weights and fp32 AdamW states (--mixed-precision {mixed}); "
                "`peftbench run` itself trains in train.dtype without autocast")
    return "pure bf16: weights, gradients and AdamW states in bf16 (--mixed-precision bf16 for fp32 master weights)"


def annotate(cands: list[Candidate], runs: list[Any], train_examples: float | None) -> None:
    """Warnings and reasons every method carries: its seed instability on small data (where the query's data is
    small) and its forgetting against full fine-tuning, where measured."""
    unstable = unstable_methods(runs) if train_examples and train_examples <= SMALL_DATA else {}
    forgetting = forgetting_reasons([c.method for c in cands], cached_forgetting_gaps(), PROXIES)
    for cand in cands:
        if cand.method in unstable:
            spread, ids = unstable[cand.method]
            cand.warnings.append(f"unstable on small data: across seeds its score relative to full FT varies by "
                                 f"±{spread:.0%} on benchmark tasks with <= {SMALL_DATA} examples (runs "
                                 f"{', '.join(ids[:4])}); run several seeds")
        if cand.method in forgetting:
            cand.reasons.append(forgetting[cand.method])
