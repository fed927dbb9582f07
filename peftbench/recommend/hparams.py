"""Hyper-parameters that follow the model size, the data size and the published evidence.

Never from peftbench's own CPU runs: the CPU suites multiply every learning rate by `lr_multiplier` (x4) to
learn something in 4-60 steps, which would be wrong advice for a real schedule. Sources, by rule:
- learning rates by method and model size: full FT 2e-5 up to ~1B, 1e-5 at 7-13B, 5e-6 beyond (LoRA paper
  Table 9-11 / common 7B practice); LoRA-family 5e-4 under 1B (Hu et al. 2021 RoBERTa: 4e-4-5e-4),
  2e-4 at 1-20B and 1e-4 beyond (Dettmers et al. 2023, QLoRA: 2e-4 for 7B/13B, 1e-4 for 33B/65B). Where the
  corpus reports learning rates for the method at a similar size (within half a decade), the advice is the
  median of the rule and each source's median lr (a source counts once however many rows it reports; the
  rule is one more voice), used if it lies within a factor 3 of the rule, and cited.
- QLoRA trains LoRA adapters: the same rank, alpha, targets and learning rate as LoRA.
- LoRA rank grows with the data, never backwards: 8 / 16 / 32 / 64 at < 1k / < 10k / < 100k / more examples
  (axolotl PR #3691), alpha = 2 x rank; all linear layers (LoRA Without Regret, Schulman et al. 2025; QLoRA
  Section 4: all-linear is needed to match full fine-tuning).
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from peftbench.method_declarations import RANKED
from peftbench.recommend.points import Point

# Methods set at LoRA's learning rates by model size (low-rank or orthogonal updates of the same projections).
LORA_RATES = ("lora", "qlora", "dora", "rslora", "adalora", "loha", "lokr", "oft", "boft")
# (largest model size in parameters, learning rate); the first bracket the model fits in applies.
LR_BY_SIZE: dict[str, tuple[tuple[float, float], ...]] = {
    "full": ((1.5e9, 2e-5), (2e10, 1e-5), (math.inf, 5e-6)),
    "lora": ((1e9, 5e-4), (2e10, 2e-4), (math.inf, 1e-4)),
    "vera": ((1e9, 4e-3), (math.inf, 2e-3)),  # VeRA (Kopiczko et al. 2024): ~10x LoRA's
    "ia3": ((math.inf, 3e-3),),  # T-Few (Liu et al. 2022): 3e-3
    "bitfit": ((1e9, 1e-3), (math.inf, 5e-4)),
    "ln_tuning": ((1e9, 1e-3), (math.inf, 5e-4)),
    "adapter": ((1e9, 1e-3), (math.inf, 3e-4)),  # LLM-Adapters: 3e-4 on 7B
    "prompt_tuning": ((math.inf, 3e-2),),
    "prefix_tuning": ((1e9, 5e-3), (math.inf, 1e-3)),
    "p_tuning": ((1e9, 5e-3), (math.inf, 1e-3)),
}
LR_SOURCE = {"full": "full FT lr by model size (2e-5 up to 1.5B parameters, 1e-5 up to 20B, 5e-6 above)",
             "lora": "LoRA-family lr by model size (Hu et al. 2021; QLoRA, Dettmers et al. 2023: 2e-4 for 7B/13B)"}
CORPUS_WINDOW = 0.5  # decades of model size within which the corpus' reported learning rates are used
# Methods whose rate evidence includes another's: QLoRA trains LoRA's adapters; DoRA is LoRA with its update's
# magnitude split off, trained at LoRA's rates in its own paper's commonsense runs (nvlabs_dora_repo). rsLoRA is
# not here: its alpha/sqrt(r) scale makes its updates larger at the same rate.
RATE_EVIDENCE = {"qlora": ("lora",), "dora": ("dora", "lora")}


def lora_rank(train_examples: float | None) -> int:
    """Non-decreasing in the data size."""
    n = train_examples or 5_000
    return 8 if n < 1_000 else 16 if n < 10_000 else 32 if n < 100_000 else 64


def _rule_lr(method: str, total_params: float) -> tuple[float, str]:
    key = "lora" if method in LORA_RATES else method
    for limit, lr in LR_BY_SIZE.get(key, ()):
        if total_params <= limit:
            return lr, LR_SOURCE.get(key, f"{method} lr by model size")
    return 5e-4, "default"


def _corpus_lr(method: str, total_params: float, points: list[Point]) -> tuple[dict[str, float], int] | None:
    """({source: its median lr}, rates reported), or None under 3 rates.

    Per source first: one paper reports one protocol on dozens of rows (the DoRA repository: 3e-4 on 56), and
    a plain median over rows would be that paper's choice alone."""
    methods = RATE_EVIDENCE.get(method, (method,))
    by_source: dict[str, list[float]] = {}
    for p in points:
        lr = p.hyperparameters.get("learning_rate") if p.hyperparameters else None
        if (p.method in methods and isinstance(lr, (int, float)) and lr > 0 and p.log_params is not None
                and not p.source.startswith("own:") and not p.anchor
                and abs(p.log_params - math.log10(max(total_params, 1))) <= CORPUS_WINDOW):
            by_source.setdefault(p.source, []).append(float(lr))
    n = sum(len(v) for v in by_source.values())
    if n < 3:
        return None
    return {source: statistics.median(v) for source, v in by_source.items()}, n


def learning_rate(method: str, total_params: float, points: list[Point]) -> tuple[float, str]:
    rule, why = _rule_lr(method, total_params)
    corpus = _corpus_lr(method, total_params, points)
    if corpus:
        # The rule of thumb is one more voice beside the sources (as the prior is one more source in the
        # quality model), so two papers that chose an odd rate do not move the advice on their own.
        medians, n = corpus
        # On a log scale (learning rates are searched and compared in factors): the median of two is their
        # geometric mean, not their midpoint.
        lr = _round_lr(10 ** statistics.median(math.log10(x) for x in [*medians.values(), rule]))
        if rule / 3 <= lr <= rule * 3:
            low, high = min(medians.values()), max(medians.values())
            spread = fmt_lr(low) if low == high else f"{fmt_lr(low)} to {fmt_lr(high)}"
            return lr, (f"lr {fmt_lr(lr)}: median of the rule of thumb ({fmt_lr(rule)}) and {len(medians)} "
                        f"source(s)' medians ({spread}; {n} reported rates for "
                        f"{'/'.join(RATE_EVIDENCE.get(method, (method,)))} on models within "
                        f"{CORPUS_WINDOW:g} decade of this size: {', '.join(sorted(medians))})")
    return rule, f"lr {fmt_lr(rule)}: {why}"


def _round_lr(lr: float) -> float:
    """Two significant digits: a learning rate is a setting, not a measurement (6.3e-05, not 6.324555e-05)."""
    return float(f"{lr:.1e}")


def fmt_lr(lr: float) -> str:
    """3e-04, 7.5e-05: one style for every rate shown."""
    mantissa, exponent = f"{lr:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{exponent}"


def suggest(method: str, defaults: dict[str, Any], total_params: float, train_examples: float | None,
            architecture: str, points: list[Point]) -> tuple[dict[str, Any], list[str]]:
    """(hyper-parameters, one note per choice). `defaults` are the registry's (peft's) defaults."""
    hps = dict(defaults)
    lr, lr_note = learning_rate(method, total_params, points)
    hps["learning_rate"] = lr
    notes = [lr_note]
    if method in RANKED:
        r = lora_rank(train_examples)
        hps["r"] = r
        hps["lora_alpha" if "lora_alpha" in hps or method in ("lora", "qlora", "dora", "rslora") else "alpha"] = 2 * r
        hps["target_modules"] = "all-linear"
        size = "unknown size (assumed ~5k)" if not train_examples else f"{train_examples:,.0f} examples"
        notes.append(f"r={r}, alpha={2 * r}: rank grows with the data ({size}; 8/16/32/64 at <1k/<10k/<100k/more)")
        notes.append("all linear layers: LoRA Without Regret (Schulman et al. 2025) and QLoRA (Dettmers et al. 2023) "
                     "find attention-only LoRA falls short of full FT")
    if method == "qlora":
        notes.append("QLoRA trains the same LoRA adapters on a 4-bit base: same rank, alpha, targets and lr as LoRA")
    return hps, notes
