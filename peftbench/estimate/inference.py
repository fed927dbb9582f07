"""Predicted inference cost of a tuned model per hardware profile, from its config alone.

The wrapped model is built on the meta device (no weights), exactly as a run wraps it, to count the base
weights, the adapter's weights and the layers it adapts. Then, for a batch of `batch` sequences of
`context` tokens:

- weights: the base's bytes, plus the adapter's when served unmerged (a merged adapter adds nothing);
- KV cache: 2 (K and V) x layers x kv_heads x head_dim x (context + virtual tokens) x batch x bytes;
- decode (one new token per sequence, memory-bound roofline): max(bytes read / (bandwidth x efficiency),
  FLOPs / (peak x matmul efficiency)) + kernels x the profile's per-kernel gap. Bytes read per step are
  every weight the token passes through (the embedding table only as the tied LM head) plus the KV cache;
- prefill (the whole prompt at once, compute-bound): the same roofline over the prompt's FLOPs,
  attention's quadratic term included.

Unmerged adapters add their weights to every step's reads, ~2 FLOPs per adapter element per token, and a
few kernels per adapted layer; soft prompts add virtual positions to the prefill and the KV cache. The
figures are a roofline, not a serving-engine simulation: batching schedulers, paged KV caches, fused or
quantised kernels and speculative decoding all change real numbers. benchmarks/inference_accuracy.md
compares them with CPU measurements; they are not validated on a GPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from peftbench.errors import UserError
from peftbench.serving import serving

BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
# Achieved share of the peak memory bandwidth in a decode step: CUDA's GEMV-bound decoding reaches ~70-85% of
# the datasheet figure (a common serving rule of thumb, not measured by peftbench: no GPU here). CPU: the
# profile's bandwidth is already a measured rate (a 64 MiB copy), and a decode step streams the weights once,
# read-only, at about that rate (benchmarks/inference_accuracy.md), so it is not derated.
DECODE_BANDWIDTH_EFFICIENCY = {"cuda": 0.8, "cpu": 1.0}
# Eager PyTorch kernels per decoder layer in one forward (norms, projections, rotary embedding, cache
# update, attention, activation, residual adds: counted ~35 in transformers' Llama layer) and per adapted
# layer when unmerged (LoRA: A, B, scale, add; IA3: one multiply).
KERNELS_PER_LAYER = 35
KERNELS_PER_ADAPTED_LAYER = 4


@dataclass
class InferenceEstimate:
    model: str
    method: str
    dtype: str
    context: int
    batch: int
    base_params: int
    adapter_params: int  # trained parameters that serving adds when unmerged (0 for full / bitfit)
    adapter_buffer_elements: int  # frozen tensors an unmerged adapter also reads (VeRA's shared matrices)
    adapted_layers: int
    extra_positions: int  # virtual tokens each sequence carries (soft prompts)
    mergeable: bool
    merge_note: str
    weights_bytes: dict[str, int | None]  # {"merged": ..., "unmerged": ...}
    adapter_bytes: int  # what one more task costs to keep beside a shared base (unmerged serving)
    kv_cache_bytes: int  # at context (+ virtual tokens) x batch
    kv_bytes_per_position: int  # per token position per sequence
    profiles: dict[str, dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Shape:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool


def _shape(config) -> _Shape:
    from peftbench.models.catalogue import architecture_family

    if architecture_family(config) != "decoder":
        raise UserError(f"--inference models decoder-only language models; {config.model_type} is "
                        f"{architecture_family(config)} (its KV cache and decoding differ)")
    heads = int(config.num_attention_heads)
    hidden = int(config.hidden_size)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    return _Shape(int(config.num_hidden_layers), hidden, heads, int(getattr(config, "num_key_value_heads", None)
                  or heads), head_dim, int(config.vocab_size), bool(getattr(config, "tie_word_embeddings", False)))


SHIPPED_STRUCTURES = Path(__file__).parent / "data" / "serving_structures.json"


def structure_key(model: str, method: str, overrides: dict | None, dtype: str) -> str:
    """What a served model's structure means: the estimator's and the method declarations' versions, the
    model's config as the model it builds, the method with its declared version and defaults (as the shipped
    fits record them, which the tests check against the registry) and the hyper-parameters that change a
    tensor's size or count. Not the library versions (`peftbench.cache`)."""
    from peftbench.cache import key_of, meaning_key
    from peftbench.estimate.front_cache import MEMORY_NEUTRAL, _config_content, shipped_fits

    declared = shipped_fits().get("methods", {}).get(method)
    sized = {k: v for k, v in (overrides or {}).items() if k not in MEMORY_NEUTRAL}
    return key_of(meaning_key("estimates", "methods"), _config_content(model), method, declared, sized, dtype)


@cache
def _shipped_structures() -> dict[str, Any]:
    """The shipped store, parsed once per process (a deploy answer reads it for every candidate)."""
    from peftbench.cache import read_json

    shipped = read_json(SHIPPED_STRUCTURES)
    return shipped if isinstance(shipped, dict) else {}


def _structure_store() -> Path:
    from peftbench.cache import cache_root

    return cache_root() / "estimates" / "serving_structures.json"


def served_structure(model: str, method: str, overrides: dict | None, dtype: str) -> tuple[_Shape, dict[str, int]]:
    """The model's decoding shape and the wrapped model's parameter counts (`count_wrapped`), from the user's
    cache or the shipped presets' when known: building the wrapped model on the meta device takes ~1 s a
    method, and `recommend --deploy` asks for every candidate on every call."""
    from peftbench.cache import read_json, write_json_atomic

    key = structure_key(model, method, overrides, dtype)
    for entries in (read_json(_structure_store()) or {}, _shipped_structures()):
        known = entries.get(key)
        if isinstance(known, dict):
            return _Shape(**known["shape"]), known["counts"]
    shape, counts = compute_structure(model, method, overrides, dtype)
    entries = read_json(_structure_store()) or {}
    entries[key] = {"shape": asdict(shape), "counts": counts}
    write_json_atomic(_structure_store(), entries, sort_keys=True)  # where it cannot, only the next call is slower
    return shape, counts


def compute_structure(model: str, method: str, overrides: dict | None, dtype: str) -> tuple[_Shape, dict[str, int]]:
    from peftbench.models.configs import load_any_config

    config = load_any_config(model)
    return _shape(config), count_wrapped(config, method, overrides, dtype)


def count_wrapped(config, method: str, overrides: dict | None, dtype: str) -> dict[str, int]:
    """Base / adapter parameter counts, adapter buffers and adapted layers of the meta-built wrapped model."""
    from peftbench.estimate.build import build_wrapped
    from peftbench.methods import get_method

    m = get_method(method)
    model = build_wrapped(config, m, m.hyperparameters(overrides), "generation", dtype)
    in_place = method in ("full", "bitfit")
    seen: set[int] = set()
    base = adapter = 0
    for _, param in model.named_parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        if param.requires_grad and not in_place:
            adapter += param.numel()
        else:
            base += param.numel()
    adapted = [mod for mod in model.modules() if hasattr(mod, "base_layer")]  # peft tuner and bottleneck layers
    shared = {id(b): b for mod in adapted for name, b in mod.named_buffers() if "base_layer" not in name}
    buffers = sum(b.numel() for b in shared.values())  # VeRA's A/B are one pair shared by every layer
    config_obj = getattr(model, "active_peft_config", None)
    virtual = int(getattr(config_obj, "num_virtual_tokens", 0) or 0) if getattr(config_obj, "is_prompt_learning",
                                                                                 False) else 0
    return {"base": base, "adapter": adapter, "buffers": buffers, "adapted_layers": len(adapted),
            "virtual": virtual}


def estimate_inference(model: str, method: str, *, overrides: dict | None = None, context: int = 2048,
                       batch: int = 1, dtype: str = "bf16", hardware: list[str] | None = None,
                       profiles: dict[str, Any] | None = None) -> InferenceEstimate:
    """Predicted weights, KV cache, decode latency and prefill time per profile, merged and unmerged.
    `profiles` (name -> `hardware.Profile`) replaces the catalogue lookup of `hardware` (benchmarks use it)."""
    from peftbench.hardware import resolve

    if context < 1 or batch < 1:
        raise UserError("--context and --batch must be positive")
    if dtype not in BYTES:
        raise UserError(f"unknown dtype '{dtype}' (valid: {', '.join(BYTES)})")
    shape, counts = served_structure(model, method, overrides, dtype)
    facts = serving(method)
    width = BYTES[dtype]
    positions = context + counts["virtual"]
    kv_per_position = 2 * shape.layers * shape.kv_heads * shape.head_dim * width
    adapter_bytes = (counts["adapter"] + counts["buffers"]) * width
    weights = {"merged": counts["base"] * width if facts.mergeable else None,
               "unmerged": counts["base"] * width + adapter_bytes}
    answers = {name: _profile(p, shape, counts, facts.mergeable, context, batch, width, dtype)
                for name, p in (profiles or resolve(hardware)).items()}
    notes = [facts.reason] if facts.reason else []
    if counts["virtual"]:
        notes.append(f"{counts['virtual']} virtual tokens lengthen every sequence: prefill and KV cache grow")
    return InferenceEstimate(model=model, method=method, dtype=dtype, context=context, batch=batch,
                             base_params=counts["base"], adapter_params=counts["adapter"],
                             adapter_buffer_elements=counts["buffers"], adapted_layers=counts["adapted_layers"],
                             extra_positions=counts["virtual"], mergeable=facts.mergeable, merge_note=facts.reason,
                             weights_bytes=weights, adapter_bytes=adapter_bytes,
                             kv_cache_bytes=kv_per_position * positions * batch,
                             kv_bytes_per_position=kv_per_position, profiles=answers, notes=notes)


def _profile(profile, shape: _Shape, counts: dict[str, int], mergeable: bool, context: int, batch: int,
             width: int, dtype: str) -> dict[str, Any]:
    """One profile's answer: decode and prefill per serving variant, and whether weights + KV cache fit."""
    kind = "cuda" if profile.kind == "cuda" else "cpu"
    virtual = counts["virtual"]
    per_token = 0 if virtual else counts["adapter"] + counts["buffers"]  # a soft prompt is no per-layer work
    variants = {"base": (0, 0, 0), "unmerged": (per_token, counts["adapted_layers"], virtual)}
    if mergeable:
        variants["merged"] = (0, 0, 0)
    out: dict[str, Any] = {"precision": profile.precision(dtype)}
    for name, (extra, adapted, positions) in variants.items():
        out[name] = _variant_times(profile, kind, shape, counts["base"], extra, adapted, context + positions,
                                   batch, width, dtype)
    served = out["merged" if mergeable else "unmerged"]
    weights = (counts["base"] + (0 if mergeable else counts["adapter"] + counts["buffers"])) * width
    kv_position = 2 * shape.layers * shape.kv_heads * shape.head_dim * width
    kv = kv_position * (context + virtual) * batch
    budget = profile.memory_bytes - profile.cuda_context_bytes
    out.update(fits=weights + kv <= budget, device_bytes=weights + kv + profile.cuda_context_bytes,
               memory_bytes=profile.memory_bytes,
               max_context=int(max(0, (budget - weights) // (kv_position * batch) - virtual)),
               decode_overhead_served=round(served["decode_ms_per_token"] / out["base"]["decode_ms_per_token"], 4),
               prefill_overhead_served=round(served["prefill_seconds"] / out["base"]["prefill_seconds"], 4))
    return out


def _variant_times(profile, kind: str, shape: _Shape, base_params: int, extra: int, adapted: int, positions: int,
                   batch: int, width: int, dtype: str) -> dict[str, float]:
    """Decode step (ms per token) at `positions` of context and prefill (s) of `positions` tokens."""
    eff = profile.efficiency
    bandwidth = profile.bandwidth_gbs * 1e9 * DECODE_BANDWIDTH_EFFICIENCY[kind]
    peak = profile.peak_flops(dtype) * eff.get("matmul", 1.0)
    gap = eff.get("kernel_seconds", 0.0)
    embedding = 0 if shape.tied else shape.vocab * shape.hidden  # a lookup, not read whole per token
    matmul_params = base_params - embedding + extra
    kernels = shape.layers * KERNELS_PER_LAYER + adapted * KERNELS_PER_ADAPTED_LAYER
    attention_per_position = 4 * shape.layers * shape.heads * shape.head_dim  # QK^T and AV, per query & key
    kv_position = 2 * shape.layers * shape.kv_heads * shape.head_dim * width
    decode_flops = batch * (2 * matmul_params + attention_per_position * positions)
    decode_bytes = matmul_params * width + batch * positions * kv_position
    decode = max(decode_bytes / bandwidth, decode_flops / peak) + kernels * gap
    prefill_flops = batch * positions * (2 * matmul_params + attention_per_position * positions / 2)  # causal
    prefill = max(matmul_params * width / bandwidth, prefill_flops / peak) + kernels * gap
    return {"decode_ms_per_token": round(1000 * decode, 4), "decode_tokens_per_second": round(batch / decode, 2),
            "prefill_seconds": round(prefill, 6), "decode_bytes": int(decode_bytes),
            "decode_flops": float(decode_flops)}
