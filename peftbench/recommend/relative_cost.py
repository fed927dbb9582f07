"""What each method costs to train at a model size, relative to the others, where no query states a model and a
GPU: the track record's held-out comparisons (a paper's table says which methods ran, not what they cost).

From the estimator's shipped shape fits (no tracing, no torch) of the decoder preset nearest in size: GPU-seconds
of one optimizer step at 4 x 512 tokens on an 80 GB A100, counted over as many cards as the step needs when one
card cannot hold it (full fine-tuning of a 7-8B model). Only the order and the ratios are used; encoder and
encoder-decoder comparisons borrow the nearest decoder's ratios (the same methods touch the same weights).
"""

from __future__ import annotations

import math
from functools import cache

CARD = "a100-80gb"
REFERENCE_BATCH, REFERENCE_SEQ_LEN = 4, 512
REFERENCE_PRESETS = ("qwen2.5-0.5b", "llama-3.2-1b", "qwen2.5-1.5b", "gemma-2-2b", "llama-3.2-3b", "phi-3-mini",
           "qwen2.5-7b", "mistral-7b", "llama-3.1-8b")


@cache
def _preset_sizes() -> dict[str, float]:
    import json

    from peftbench.models.configs import preset_for
    from peftbench.recommend.models import _approx_params

    sizes = {}
    for p in REFERENCE_PRESETS:
        preset = preset_for(p)
        assert preset is not None  # the reference presets all ship
        sizes[p] = math.log10(_approx_params(json.loads((preset / "config.json").read_text())))
    return sizes


@cache
def gpu_seconds(method: str, preset: str) -> float | None:
    """GPU-seconds of one optimizer step of `method` on `preset` (module doc); None where it cannot apply."""
    import warnings

    from peftbench.errors import MethodNotApplicable
    from peftbench.estimate.api import estimate_setting

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = estimate_setting(preset, method, hardware=[CARD], batch_size=REFERENCE_BATCH,
                                   seq_len=REFERENCE_SEQ_LEN)
    except (MethodNotApplicable, RuntimeError, ValueError):
        return None
    profile = est.profiles[CARD]
    cards = max(1, math.ceil(profile["device_bytes"] / profile["memory_bytes"]))
    return profile["step_seconds"] * cards


def relative_costs(methods: list[str], log_params: float | None) -> dict[str, float]:
    """method -> GPU-seconds per step on the decoder preset nearest `log_params` (1B when unknown); methods
    that cannot apply there (BitFit without biases) take LoRA's cost."""
    sizes = _preset_sizes()
    target = 9.0 if log_params is None else log_params
    preset = min(sizes, key=lambda p: abs(sizes[p] - target))
    lora = gpu_seconds("lora", preset)
    out = {}
    for m in methods:
        cost = gpu_seconds(m, preset)
        out[m] = cost if cost is not None else (lora or 1.0)
    return out
