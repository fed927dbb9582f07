"""Per-GPU memory and step time of data-parallel training on N GPUs, built on the single-GPU trace.

Nothing is traced again: the one-GPU trace's per-phase breakdown (weights, gradients, optimizer states,
activations, temporaries, at each phase's peak and at its would-be peaks) is re-divided as each strategy
keeps it, so the 1-GPU answer and its shipped shape fits stay exactly as they are.

`--batch-size` is the per-GPU micro-batch (as `per_device_train_batch_size` in transformers): activations
and the step's compute are those of the one-GPU trace; the global batch is N times larger.

- ddp: everything replicated, plus the reducer's bucket storage: with torch's default
  `gradient_as_bucket_view=False` the buckets (25 MiB each) together hold a second copy of every gradient
  (torch.nn.parallel.DistributedDataParallel docs: bucket views save "the total gradients size").
- fsdp (torch FSDP2 `fully_shard` per transformer layer + the root): parameters, gradients and optimizer
  states sharded 1/N in the trace's dtypes; unsharded in forward/backward: the root unit (embeddings, head;
  FSDP2 keeps the root unsharded between forward and backward), the current layer and the prefetched next
  one; in backward also the current layer's unsharded gradients and its reduce-scatter input, and the
  root's unsharded gradients (reduced last). `--offload params` is CPUOffload: parameters, gradients and the
  optimizer step live on the CPU.
- zero2 / zero3 (DeepSpeed): DeepSpeed's precision layout: with bf16/fp16 (or autocast) the model is held
  in 16 bits and the optimizer keeps fp32 master weights and fp32 states (and an fp32 gradient partition at
  the step); stage 2 shards gradients and optimizer states, stage 3 the 16-bit parameters too, gathering the
  largest module plus one prefetch bucket at a time (DeepSpeed's own `4 * largest_layer_params` term counts
  that module's 16-bit parameters and gradients). Buckets: one `reduce_bucket_size` gradient buffer.
PEFT: only trainable parameters have gradients and optimizer states to shard; frozen weights are
replicated under ddp/zero2 and sharded under fsdp/zero3 (and all-gathered every forward and backward).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from peftbench.errors import UserError
from peftbench.estimate.tracer_math import CATEGORIES
from peftbench.vocabulary import OFFLOADS, STRATEGIES, VALID_OFFLOADS

DDP_BUCKET_BYTES = 25 * 2**20  # torch DDP bucket_cap_mb default
ZERO_REDUCE_BUCKET = 500_000_000  # elements: DeepSpeed ZeroConfig reduce_bucket_size default (5e8)
ZERO_ALLGATHER_BUCKET = 500_000_000  # elements: allgather_bucket_size default (5e8), stage-2 step chunks
ZERO3_PREFETCH_BUCKET = 50_000_000  # elements: stage3_prefetch_bucket_size default (5e7)
ZERO3_SUB_GROUP = 1_000_000_000  # elements: sub_group_size default (1e9): fp32 gradients at the step
# Offloaded optimizer step on the host: an assumption (not measured, no source), parameters per second per
# GPU's process, for DeepSpeed's CPU Adam; said in every offload answer's notes.
CPU_ADAM_PARAMS_PER_SECOND = 1e9
EXTRA = ("gathered", "buckets")  # per-GPU categories besides CATEGORIES


@dataclass(frozen=True)
class DistributedPlan:
    gpus: int
    strategy: str
    offload: str = "none"


@dataclass(frozen=True)
class Units:
    """Parameter counts of what the strategies wrap: the root (embeddings, head, final norm), one
    transformer layer, and the largest single module (what ZeRO-3 gathers at once)."""

    layers: int
    root_params: int
    layer_params: int
    largest_module_params: int
    root_trainable: int
    layer_trainable: int


def check_plan(gpus: int | None, strategy: str | None, offload: str | None) -> DistributedPlan:
    """Validate `--gpus/--strategy/--offload` (a UserError names what is valid)."""
    gpus = 1 if gpus is None else gpus
    strategy = strategy or "ddp"
    offload = offload or "none"
    if not isinstance(gpus, int) or gpus < 1 or gpus > 4096:
        raise UserError(f"--gpus must be a whole number of GPUs from 1 to 4096, not '{gpus}'")
    if strategy not in STRATEGIES:
        raise UserError(f"unknown strategy '{strategy}' (valid: {', '.join(STRATEGIES)})")
    if offload not in OFFLOADS:
        raise UserError(f"unknown offload '{offload}' (valid: {', '.join(OFFLOADS)})")
    valid = VALID_OFFLOADS[strategy]
    if offload not in valid:
        raise UserError(f"{strategy} cannot offload '{offload}' (valid with {strategy}: {', '.join(valid)}; "
                        "FSDP's CPUOffload moves parameters, gradients and optimizer together)")
    return DistributedPlan(gpus, strategy, offload)


# ---- what the model is made of -------------------------------------------------------------------------
def config_dict(model: str) -> dict[str, Any]:
    """The model's config as a dict: a preset's JSON without importing transformers, else via transformers."""
    from peftbench.models.config_identity import preset_of
    from peftbench.models.configs import PRESETS_DIR, load_any_config

    preset = preset_of(model)  # a local config that builds a preset's model too: no transformers
    if preset is not None:
        return json.loads((PRESETS_DIR / preset / "config.json").read_text())
    return load_any_config(model).to_dict()


def unit_sizes(config: dict[str, Any], total: int, trainable: int) -> Units:
    """Units from config arithmetic: root = token embeddings (+ an untied head), layer = the rest / depth.

    Exact for Llama-3.1-8B to 128 parameters per layer (its final norm lands in the layers' share).
    Encoder-decoder stacks count encoder and decoder layers as one average layer.
    """
    get = config.get
    hidden = int(get("hidden_size") or get("d_model") or get("n_embd") or 0)
    vocab = int(get("vocab_size") or 0)
    inner = int(get("intermediate_size") or get("d_ff") or get("n_inner") or get("encoder_ffn_dim") or 4 * hidden)
    stacks = [config[k] for k in ("num_layers", "num_decoder_layers") if isinstance(get(k), int)] or \
             [config[k] for k in ("encoder_layers", "decoder_layers") if isinstance(get(k), int)] or \
             [int(get("num_hidden_layers") or get("n_layer") or 1)]
    layers = max(1, sum(stacks))
    tied = bool(get("tie_word_embeddings", True))
    root = min(total, vocab * hidden * (1 if tied else 2))
    layer = (total - root) // layers
    root = total - layer * layers
    full = trainable >= total
    layer_trainable = layer if full else trainable // layers
    return Units(layers, root, layer, max(vocab * hidden, hidden * inner, 1), root if full else 0, layer_trainable)


@dataclass(frozen=True)
class Sizes:
    """Byte sizes of one replica's model states, in the trace's dtypes and in DeepSpeed's layout."""

    param_bytes: int  # bytes per parameter in the trace (fp32 under autocast)
    weights: int  # traced weights (buffers and 4-bit packing included)
    gradients: int  # every trainable gradient, as traced at the optimizer step
    states: int  # optimizer states, as traced
    trainable: int
    zero_bytes: int  # DeepSpeed's parameter / gradient bytes: 2 with bf16/fp16 or autocast, else 4
    quantized: bool  # 4-bit base (QLoRA): weights are not re-cast


def sizes_of(trace: dict[str, Any], settings: dict[str, Any], quantized: bool = False) -> Sizes:
    opt = trace["phases"].get("optimizer") or max(trace["phases"].values(), key=lambda n: n["peak"])
    b = 4 if settings.get("mixed_precision") or settings.get("dtype") == "fp32" else 2
    zero = 2 if settings.get("mixed_precision") or settings.get("dtype") in ("bf16", "fp16") else 4
    grads = int(opt["gradients"]) or trace["trainable_params"] * b
    return Sizes(b, int(opt["weights"]), grads, int(opt["optimizer_states"]), trace["trainable_params"], zero,
                 quantized)


def _zero_states(s: Sizes, optimizer: str) -> int:
    """DeepSpeed's optimizer-side bytes of one replica: fp32 master weights (16-bit training) and the
    optimizer's states in fp32 (bitsandbytes' 8-bit states kept as traced)."""
    master = 4 * s.trainable if s.zero_bytes == 2 else 0
    states = s.states if optimizer == "adamw8bit" else s.states * 4 // s.param_bytes
    return master + states


# ---- per-GPU memory ------------------------------------------------------------------------------------
def _event(phase: str, e: dict[str, int], s: Sizes, u: Units, plan: DistributedPlan, optimizer: str) -> dict[str, int]:
    """One traced event's bytes (one replica, one GPU) as one GPU of `plan` holds them."""
    n, strategy, offload = plan.gpus, plan.strategy, plan.offload
    w, g, st, a, t = (int(e[c]) for c in CATEGORIES)
    step, compute = phase == "optimizer", phase in ("forward", "backward")
    out = dict.fromkeys(CATEGORIES + EXTRA, 0)
    out["activations"] = a
    out["temporaries"] = t
    if strategy == "ddp":
        out.update(weights=w, gradients=g, optimizer_states=st, buckets=s.gradients)
        return out
    if strategy == "fsdp":
        on_gpu = offload == "none"
        gather = 2 if s.param_bytes == 4 and s.zero_bytes == 2 else s.param_bytes  # MixedPrecisionPolicy
        out["weights"] = w // n if on_gpu else 0
        out["gathered"] = (u.root_params + 2 * u.layer_params) * gather if compute else 0
        out["gradients"] = g // n if on_gpu else 0
        if phase == "backward":
            out["gradients"] += (u.root_trainable + 2 * u.layer_trainable) * s.param_bytes
        out["optimizer_states"] = st // n if on_gpu else 0
        out["temporaries"] = (t // n if on_gpu else 0) if step else t
        return out
    # DeepSpeed ZeRO-2 / ZeRO-3
    recast = 1.0 if s.quantized else s.zero_bytes / s.param_bytes
    on_gpu = offload == "none"
    out["weights"] = int(w * recast) // (n if strategy == "zero3" else 1) if offload != "params" else 0
    if strategy == "zero3" and compute:
        out["gathered"] = (u.largest_module_params + ZERO3_PREFETCH_BUCKET) * s.zero_bytes
    if on_gpu:
        out["gradients"] = int(g * s.zero_bytes / s.param_bytes) // n
        if step:
            fp32 = 4 * s.trainable // n if s.zero_bytes == 2 else 0
            out["gradients"] = s.trainable * s.zero_bytes // n + (
                min(fp32, 4 * ZERO3_SUB_GROUP) if strategy == "zero3" else fp32)
        out["optimizer_states"] = _zero_states(s, optimizer) // n
        out["temporaries"] = t * 4 // s.param_bytes // n if step else t
    else:
        out["temporaries"] = 0 if step else t
    if strategy == "zero3" and phase == "backward":
        out["gradients"] += min(u.largest_module_params, s.trainable) * s.zero_bytes
    out["buckets"] = min(ZERO_REDUCE_BUCKET, max(s.trainable, 1)) * s.zero_bytes if s.trainable else 0
    return out


def per_gpu_phases(trace: dict[str, Any], s: Sizes, u: Units, plan: DistributedPlan, optimizer: str) -> dict[str, dict]:
    """Per phase, the largest per-GPU event among the phase's peak and its would-be peaks."""
    out = {}
    for phase, numbers in trace["phases"].items():
        events = [numbers] + [c for c in (numbers.get("candidates") or {}).values() if min(c.values()) >= 0]
        shaped = [_event(phase, {c: e.get(c, 0) for c in CATEGORIES}, s, u, plan, optimizer) for e in events]
        best = max(shaped, key=lambda d: sum(d.values()))
        out[phase] = {**best, "peak": sum(best.values())}
    return out


def offloaded_bytes(s: Sizes, plan: DistributedPlan, optimizer: str) -> int:
    """Host memory one GPU's share of offloaded states takes (pinned buffers not counted)."""
    if plan.offload == "none":
        return 0
    host = _zero_states(s, optimizer) + 4 * s.trainable if plan.strategy != "fsdp" else s.states + s.gradients
    if plan.offload == "params":
        host += s.weights if plan.strategy == "fsdp" else int(s.weights * s.zero_bytes / s.param_bytes)
    return host // plan.gpus


def model_states_per_gpu(s: Sizes, plan: DistributedPlan, optimizer: str, u: Units | None = None) -> int:
    """Resident weights + gradients + optimizer states per GPU at the optimizer step (no gathered units,
    buckets or activations): the quantity DeepSpeed's `estimate_zero*_model_states_mem_needs` counts."""
    e = dict(weights=s.weights, gradients=s.gradients, optimizer_states=s.states, activations=0, temporaries=0)
    units = u or Units(1, 0, 0, 0, 0, 0)
    out = _event("optimizer", e, s, units, plan, optimizer)
    return out["weights"] + out["gradients"] + out["optimizer_states"]


# ---- communication and step time -----------------------------------------------------------------------
def communication(s: Sizes, plan: DistributedPlan) -> dict[str, int]:
    """Bytes each GPU sends per step, by collective (ring algorithms: all-reduce 2(N-1)/N x bytes,
    reduce-scatter and all-gather (N-1)/N x bytes); `host` is offload traffic over the host link."""
    n = plan.gpus
    if n == 1 and plan.offload == "none":
        return {}
    ring = (n - 1) / n
    out: dict[str, int] = {}
    if plan.strategy == "ddp":
        out["all_reduce_gradients"] = int(2 * ring * s.gradients)
    elif plan.strategy == "fsdp":
        gather = s.weights // 2 if s.param_bytes == 4 and s.zero_bytes == 2 else s.weights
        out["all_gather_parameters_forward"] = int(ring * gather)
        out["all_gather_parameters_backward"] = int(ring * gather)
        out["reduce_scatter_gradients"] = int(ring * s.gradients)
    else:
        grads16 = s.trainable * s.zero_bytes
        weights16 = s.weights if s.quantized else int(s.weights * s.zero_bytes / s.param_bytes)
        out["reduce_scatter_gradients"] = int(ring * grads16)
        if plan.strategy == "zero2":
            out["all_gather_updated_parameters"] = int(ring * grads16)
        else:
            out["all_gather_parameters_forward"] = int(ring * weights16)
            out["all_gather_parameters_backward"] = int(ring * weights16)
    if plan.offload != "none":
        moved = 2 * s.trainable * s.zero_bytes  # gradients to the host, updated parameters back
        if plan.offload == "params":
            moved += 2 * s.weights  # every forward and backward fetches the parameters' shard
        out["host"] = moved // n
    return {k: v for k, v in out.items() if v}


def step_time(compute_seconds: float, comm: dict[str, int], s: Sizes, plan: DistributedPlan,
              profile) -> dict[str, float]:
    """Compute (the one-GPU roofline at the per-GPU micro-batch) plus exposed communication.

    Gradient reduction and parameter gathers overlap with forward/backward compute (buckets, prefetch):
    only what exceeds the compute time shows, and at least one bucket / unit (the last reduction cannot
    overlap). ZeRO-2's all-gather after the step, host transfers and the host optimizer step do not
    overlap. Overlap is modelled, not measured: a lower bound on the exposed share.
    """
    from peftbench.hardware import collectives

    link = profile.interconnect or {}
    eff = collectives()["efficiency"]
    gpu_rate = float(link.get("gbs_per_direction") or 0) * 1e9 * eff
    host_rate = float(link.get("host_gbs_per_direction") or 0) * 1e9 * eff
    if not comm:
        return {"step_seconds": compute_seconds, "compute_seconds": compute_seconds, "communication_seconds": 0.0}
    if gpu_rate <= 0:
        raise UserError(f"{profile.title} has no interconnect figure: multi-GPU times need one")
    serial = comm.get("all_gather_updated_parameters", 0) / gpu_rate + comm.get("host", 0) / (host_rate or gpu_rate)
    if plan.offload != "none":
        serial += s.trainable / plan.gpus / CPU_ADAM_PARAMS_PER_SECOND
    overlapped = sum(v for k, v in comm.items() if k not in ("host", "all_gather_updated_parameters")) / gpu_rate
    total = sum(v for k, v in comm.items() if k != "host") / gpu_rate + comm.get("host", 0) / (host_rate or gpu_rate)
    last = min(overlapped, DDP_BUCKET_BYTES * 2 / gpu_rate if plan.strategy == "ddp" else overlapped / 8)
    exposed = max(last, overlapped - compute_seconds) + serial
    return {"step_seconds": compute_seconds + exposed, "compute_seconds": compute_seconds,
            "communication_seconds": total}


# ---- the answer ----------------------------------------------------------------------------------------
def distribute(single: dict[str, Any], trace: dict[str, Any], units: Units, plan: DistributedPlan,
               profiles: dict[str, Any], kind: str = "cuda") -> dict[str, Any]:
    """The single-GPU answer (`Estimate.to_dict()`) and its trace -> the per-GPU answer under `plan`."""
    from peftbench.estimate.core import CPU_OVERHEAD_BYTES, _reserved_beyond, max_scale

    settings = single["settings"]
    optimizer = settings["optimizer"]
    s = sizes_of(trace, settings, quantized=any("4-bit" in n for n in single.get("notes", [])))
    phases = per_gpu_phases(trace, s, units, plan, optimizer)
    phase, numbers = max(phases.items(), key=lambda kv: kv[1]["peak"])
    breakdown = {k: int(v) for k, v in numbers.items() if k != "peak"}
    breakdown["overhead"] = _reserved_beyond(trace, numbers["peak"], 1.0) if kind == "cuda" else CPU_OVERHEAD_BYTES
    peak = sum(breakdown.values())
    comm = communication(s, plan)
    scaled = {**trace, "phases": phases}
    answers = {}
    for name, profile in profiles.items():
        one = single["profiles"][name]
        budget = profile.memory_bytes - profile.cuda_context_bytes
        scale = max_scale(scaled, profile.kind, budget)
        timing = step_time(one["step_seconds"], comm, s, plan, profile)
        answers[name] = {**one, "fits": peak <= budget, **{k: round(v, 6) for k, v in timing.items()},
                         "max_batch_size": int(settings["batch_size"] * scale) if scale != float("inf") else None,
                         "max_seq_len": int(settings["seq_len"] * scale) if scale != float("inf") else None,
                         "device_bytes": peak + profile.cuda_context_bytes,
                         "interconnect": (profile.interconnect or {}).get("link")}
    out = dict(single)
    out.update(peak_bytes=peak, per_gpu_peak_bytes=peak, breakdown=breakdown, peak_phase=phase, profiles=answers,
               gpus=plan.gpus, strategy=plan.strategy, offload=plan.offload,
               single_gpu_peak_bytes=single["peak_bytes"],
               model_states_bytes_per_gpu=model_states_per_gpu(s, plan, optimizer, units),
               offloaded_bytes_per_gpu=offloaded_bytes(s, plan, optimizer),
               communication_bytes_per_step=sum(v for k, v in comm.items() if k != "host"),
               communication=comm,
               units={"layers": units.layers, "root_params": units.root_params, "layer_params": units.layer_params,
                      "largest_module_params": units.largest_module_params})
    out["settings"] = {**settings, "micro_batch_size": settings["batch_size"],
                       "global_batch_size": settings["batch_size"] * plan.gpus}
    out["notes"] = list(single.get("notes", [])) + _notes(plan)
    return out


def _notes(plan: DistributedPlan) -> list[str]:
    notes = [f"{plan.gpus} GPUs, {plan.strategy}" + (f", offload {plan.offload}" if plan.offload != "none" else "")
             + ": --batch-size is the per-GPU micro-batch; communication overlap with compute is modelled, "
             "not measured, and collectives are taken at 70% of the link's per-direction rate (assumed)"]
    if plan.strategy in ("zero2", "zero3"):
        notes.append("DeepSpeed defaults: reduce_bucket_size 5e8 elements (one buffer; transformers' 'auto' "
                     "config sets hidden_size^2 instead), 16-bit model with fp32 master weights and states")
    if plan.offload != "none":
        notes.append(f"host optimizer step assumed at {CPU_ADAM_PARAMS_PER_SECOND:.0e} parameters/s per GPU "
                     "(not measured)")
    return notes
