"""`recommend --gpus N`: methods that do not fit one card, on several.

Acts on the engine's candidates after their cost and quality are known, so the core ranking stays one path.
A method that does not fit one card is given the fewest cards of that kind on which some data-parallel
strategy fits it (`estimate.distributed.smallest_fit`, cheapest strategy first); within `--gpus` it becomes
a candidate again, with the strategy it assumes said beside it.
"""

from __future__ import annotations

import math
from typing import Any

from peftbench.recommend.feasibility import Gpu, multi_gpu_fit

MAX_GPUS = 64  # how far "the smallest N" is searched for methods that do not fit


def consider_multi_gpu(cands: list[Any], gpus: int, gpu: Gpu, task_kind: str, seq_len: int,
                       num_labels: int = 2) -> list[str]:
    """Candidates that do not fit one card: record the smallest N and strategy; within `gpus`, make them
    candidates again at that N. Returns notes for the answer."""
    if gpus < 1:
        from peftbench.errors import UserError

        raise UserError(f"--gpus must be a positive integer, got {gpus}")
    notes = []
    for cand in cands:
        if cand.status != "does not fit":
            continue
        found = _smallest_setup(cand, gpu, task_kind, seq_len, num_labels)
        if found is None:
            cand.would_fit_with.append(f"more than {MAX_GPUS} GPUs of this kind (or a larger card)"
                                       if not gpu.custom else "a catalogue card (multi-GPU needs its interconnect)")
            continue
        micro, fit = found
        accumulation = max(1, math.ceil(cand.batch_size * cand.gradient_accumulation / (micro * fit["gpus"])))
        how = (f"{fit['gpus']} x {gpu.label.split(' (')[0]} with {fit['strategy']}"
               + (f" + {fit['offload']} offload" if fit["offload"] != "none" else "")
               + f", micro-batch {micro} per GPU x {accumulation} accumulation"
               + f" ({fit['per_gpu_peak_bytes'] / 2**30:.1f} GiB per GPU, {fit['step_seconds']:.2f} s per step)")
        if fit["gpus"] <= gpus:
            cand.status, cand.excluded_because, cand.fits = "ranked", None, True
            cand.gpus = fit["gpus"]
            cand.peak_bytes, cand.step_seconds = fit["per_gpu_peak_bytes"], fit["step_seconds"]
            cand.batch_size, cand.gradient_accumulation = micro, accumulation
            cand.reasons.insert(0, f"assumes {how}: it does not fit one card")
            cand.warnings.append(f"the run line trains on one device: `peftbench run` does not yet launch a run across "
                                 f"{fit['gpus']} GPUs with {fit['strategy']}; train it with accelerate/DeepSpeed "
                                 "(or torchrun with FSDP) at these settings")
        else:
            cand.would_fit_with.append(how)
    if gpus > 1:
        notes.append(f"up to {gpus} GPUs of this kind: a method that does not fit one card is trained "
                     "data-parallel with the cheapest strategy that fits (ddp < zero2 < fsdp < zero3 < offload)")
    return notes


def _smallest_setup(cand: Any, gpu: Gpu, task_kind: str, seq_len: int,
                    num_labels: int) -> tuple[int, dict[str, Any]] | None:
    """(micro-batch, fit) with the fewest GPUs, trying the candidate's micro-batch and halvings of it down to 1
    (activations do not shard: a smaller micro-batch per GPU with accumulation keeps the effective batch)."""
    best: tuple[int, dict[str, Any]] | None = None
    micro = max(1, cand.batch_size)
    while True:
        fit = multi_gpu_fit(cand.model, cand.method, gpu, task_kind, seq_len, micro, max_gpus=MAX_GPUS,
                            num_labels=num_labels)
        if fit is not None and (best is None or fit["gpus"] < best[1]["gpus"]):
            best = (micro, fit)
        if micro == 1:
            return best
        micro //= 2
