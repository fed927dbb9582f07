"""What happens around training that the ranking weighs on request: several GPUs (`recommend --gpus N`) and
how the model will be served (`recommend --deploy server|edge`).

Both act on the engine's candidates after their cost and quality are known, so the core ranking stays one
path. Several GPUs: a method that does not fit one card is given the fewest cards of that kind on which
some data-parallel strategy fits it (`estimate.distributed.smallest_fit`, cheapest strategy first); within
`--gpus` it becomes a candidate again, with the strategy it assumes said beside it. Serving: the predicted
inference overhead of each ranked method on the target card (`estimate.inference`), weighed by
`deploy.deploy_ranking`, which says how each method moved.
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
            cand.peak_bytes, cand.step_seconds = fit["per_gpu_peak_bytes"], fit["step_seconds"]
            cand.batch_size, cand.gradient_accumulation = micro, accumulation
            cand.reasons.insert(0, f"assumes {how}: it does not fit one card")
            cand.override += f"  # on {fit['gpus']} GPUs with {fit['strategy']}"
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


def serving_order(ranked: list[Any], gpu: Gpu, scenario: str, max_latency_overhead: float | None,
                  adapters_per_base: int) -> tuple[list[Any], dict[str, Any]]:
    """The ranked candidates re-ordered for serving, each with a sentence on how serving moved it."""
    from peftbench.recommend.deploy import deploy_ranking
    from peftbench.recommend.regime import MIN_NEAR_FOR_FIRST

    # Quality on the engine's own ranking scale (the risk-aware lower bound), and its evidence tiers kept:
    # serving cost may reorder methods, but never lift a thinly evidenced one above a well evidenced one.
    facts = [_serving_facts(c, gpu) | {"tier": 0 if c.near_comparisons >= MIN_NEAR_FOR_FIRST else 1}
             for c in ranked]
    result = deploy_ranking(facts, scenario, max_latency_overhead=max_latency_overhead,
                            adapters_per_base=adapters_per_base)
    by_method = {c.method: c for c in ranked}
    for entry in result.entries:
        by_method[entry.method].reasons.insert(0, f"serving ({scenario}): {entry.explanation}")
    return [by_method[e.method] for e in result.entries], result.to_dict()


def _serving_facts(cand: Any, gpu: Gpu) -> dict[str, Any]:
    """Predicted serving cost of one candidate on the target card; quality on the engine's scale."""
    quality = cand.risk_score if cand.risk_score is not None else (cand.predicted_relative_quality or 1.0) - 1.0
    facts: dict[str, Any] = {"method": cand.method, "quality": quality, "adapter_bytes": cand.adapter_bytes}
    try:
        from peftbench.estimate.inference import estimate_inference

        est = estimate_inference(cand.model, cand.method, hardware=[gpu.profile])
    except Exception:  # noqa: BLE001  an encoder or a model the serving estimate cannot build: not weighed
        return facts
    answer = next(iter(est.profiles.values()))
    base = answer["base"]["decode_ms_per_token"]
    facts["base_bytes"] = est.weights_bytes.get("merged") or est.weights_bytes["unmerged"]
    facts["overhead_unmerged"] = round(answer["unmerged"]["decode_ms_per_token"] / base, 4)
    if "merged" in answer:
        facts["overhead_merged"] = round(answer["merged"]["decode_ms_per_token"] / base, 4)
    facts["overhead_source"] = "predicted"
    return facts
