"""Feasibility and cost, always from `peftbench.estimate`, never from the quality model.

For each method the search tries what a practitioner would, cheapest change first: as configured; the
largest batch that fits (with gradient accumulation to keep the effective batch); gradient checkpointing;
both. Estimates are cached as JSON keyed by the estimator's source hash, for every hardware profile at
once, so a later query on another GPU reuses them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from peftbench.recommend.store import key_of, meaning_key, read_json, write_json

QLORA_STANDS_IN_FOR = ("lora", "dora", "rslora")  # methods QLoRA's 4-bit base can stand in for


@dataclass
class Gpu:
    profile: str  # the estimator's hardware profile name
    memory_bytes: int
    label: str
    custom: bool = False  # memory stated by the user, not a catalogue card's
    context_bytes: int = 0


@dataclass
class Cost:
    method: str
    fits: bool
    peak_bytes: int
    step_seconds: float | None
    trainable_params: int
    total_params: int
    batch_size: int
    accumulation: int
    gradient_checkpointing: bool
    notes: list[str] = field(default_factory=list)
    not_applicable: str | None = None
    would_fit_with: list[str] = field(default_factory=list)


def resolve_gpu(gpu: str | None, hardware: str | None) -> Gpu:
    """`--gpu 16GB` or `--hardware NAME` to the estimator's profile.

    A memory size with no card in the catalogue (8GB) keeps the stated memory as the limit and borrows
    the speed of the catalogue card nearest in size, which the notes say.
    """
    import re

    from peftbench import hardware as hw
    from peftbench.errors import UserError

    if gpu and hardware:
        raise UserError("give --gpu or --hardware, not both")
    if hardware or not gpu:
        name = (hardware or "cpu").lower()
        profile = next(iter(hw.resolve([name]).values()))
        return Gpu(profile.name, int(profile.memory_bytes), f"{profile.title}" if name != "cpu" else "this CPU",
                   context_bytes=int(profile.cuda_context_bytes))
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:gb|g|gib)?\s*", gpu.lower())
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"--gpu expects a memory size like 16GB, not '{gpu}'")
    size = float(match.group(1))
    cards = hw.gpu_profiles().values()
    if any(p.nominal_gb == size for p in cards):
        profile = hw.match_memory_class(gpu)
        return Gpu(profile.name, int(profile.memory_bytes), f"{gpu} ({profile.title}, the most conservative card)",
                   context_bytes=int(profile.cuda_context_bytes))
    nearest = min(cards, key=lambda p: (abs(p.nominal_gb - size), p.nominal_gb))
    return Gpu(nearest.name, int(size * 2**30), f"{gpu} (no such card in the catalogue: its memory, "
               f"{nearest.title}'s speed)", custom=True, context_bytes=int(nearest.cuda_context_bytes))


def all_profiles() -> list[str]:
    from peftbench import hardware as hw

    return sorted(hw.gpu_profiles())


class CostModel:
    """Memoised estimator calls for one query shape (task kind, sequence length, labels)."""

    def __init__(self, gpu: Gpu, task_kind: str, seq_len: int, num_labels: int = 2,
                 mixed_precision: str | None = None) -> None:
        self.gpu, self.task_kind, self.seq_len, self.num_labels = gpu, task_kind, seq_len, num_labels
        # Pure bf16 (weights, gradients and AdamW states in bf16) unless mixed precision is asked for: then
        # fp32 master weights and fp32 AdamW states with bf16/fp16 autocast. On a CPU, fp32: what `peftbench
        # run` trains in there, and a CPU without native bf16 emulates it (a 22M-parameter step was costed at
        # 31 minutes in bf16 where fp32 measures seconds).
        self.mixed_precision = mixed_precision
        self.dtype = "fp32" if mixed_precision or gpu.profile == "cpu" else "bf16"
        self.fingerprint = meaning_key("estimates", "methods")
        self.cache = read_json("estimates.json")
        self.new: dict[str, Any] = {}

    def _key(self, model: str, method: str, overrides: dict[str, Any], batch: int, checkpointing: bool) -> str:
        from peftbench.models.config_identity import model_identity

        shape = {k: v for k, v in overrides.items() if k != "learning_rate"}  # the lr changes no memory
        return key_of(self.fingerprint, model_identity(model), method, shape, self.task_kind, batch, self.seq_len,
                      checkpointing, self.num_labels, self.dtype, self.mixed_precision)

    def is_cached(self, model: str, method: str, overrides: dict[str, Any], batch: int) -> bool:
        """Whether the search can answer without tracing: its first configuration is cached, or shipped shape
        fits cover the method's setting with and without gradient checkpointing (any batch size)."""
        entry = self.cache.get(self._key(model, method, overrides, batch, False))
        if entry is not None and (entry.get("profiles") is None or self.gpu.profile in entry["profiles"]):
            return True
        # Fits are CUDA traces: a CPU query (measured on this machine) and mixed precision always trace.
        return self.gpu.profile != "cpu" and self.mixed_precision is None and \
            all(self._fit_covers(model, method, overrides, ckpt) for ckpt in (False, True))

    def _fit_covers(self, model: str, method: str, overrides: dict[str, Any], ckpt: bool) -> bool:
        from peftbench.estimate.front_cache import load_fit

        setting = {"overrides": {k: v for k, v in overrides.items() if k != "learning_rate"},
                   "task_kind": self.task_kind, "dtype": self.dtype, "mixed_precision": None, "optimizer": "adamw",
                   "gradient_checkpointing": ckpt, "num_labels": self.num_labels}
        entry = load_fit(model, method, setting, "cuda")
        return entry is not None and ("not_applicable" in entry or
                                      entry["seq_range"][0] <= self.seq_len <= entry["seq_range"][1])

    def raw(self, model: str, method: str, overrides: dict[str, Any], batch: int, checkpointing: bool) -> dict:
        key = self._key(model, method, overrides, batch, checkpointing)
        entry = self.cache.get(key) or self.new.get(key)
        if entry is None or (entry.get("profiles") is not None and self.gpu.profile not in entry["profiles"]):
            entry = self._compute(model, method, overrides, batch, checkpointing)
            self.new[key] = entry
        return entry

    def _compute(self, model: str, method: str, overrides: dict[str, Any], batch: int, ckpt: bool) -> dict:
        import warnings

        from peftbench.errors import MethodNotApplicable
        from peftbench.estimate.api import estimate_setting

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # transformers' deprecation notices are not the user's concern
                shape = {k: v for k, v in overrides.items() if k != "learning_rate"}
                est = estimate_setting(model, method, overrides=shape, task_kind=self.task_kind, batch_size=batch,
                               seq_len=self.seq_len, dtype=self.dtype, mixed_precision=self.mixed_precision,
                               gradient_checkpointing=ckpt,
                               hardware=self._profiles(), num_labels=self.num_labels)
        except MethodNotApplicable as exc:
            return {"not_applicable": str(exc).splitlines()[0][:200]}
        except (RuntimeError, ValueError, TypeError) as exc:
            # An estimator failure for one method must not sink the whole answer: that method is listed as
            # not estimable. Cached like any answer: the key holds the estimator's version, so a fixed
            # estimator (with its version bumped) is asked again.
            return {"not_applicable": "cannot be built for this model (peftbench estimate "
                                      f"{model} --method {method} shows why)", "error": str(exc).splitlines()[0][:160]}
        full = est.to_dict()
        # Only what the recommender reads: keeps the shipped cache small (the breakdown is per-estimate MBs).
        keep = ("fits", "step_seconds", "max_batch_size")
        return {"peak_bytes": full["peak_bytes"], "trainable_params": full["trainable_params"],
                "total_params": full["total_params"],
                "profiles": {n: {k: p.get(k) for k in keep} for n, p in full["profiles"].items()}}

    def _profiles(self) -> list[str]:
        """Every GPU profile at once (a later query on another card reuses the entry); a CPU query alone: its
        trace is of the CPU's own kernels, and the GPUs' would double the tracing for nothing it shows."""
        return ["cpu"] if self.gpu.profile == "cpu" else sorted(set(all_profiles()) | {self.gpu.profile})

    def flush(self) -> None:
        if self.new:
            write_json("estimates.json", self.new)
            self.cache.update(self.new)
            self.new = {}

    def _cost(self, model: str, method: str, hps: dict[str, Any], batch: int, ckpt: bool, accum: int) -> Cost:
        entry = self.raw(model, method, hps, batch, ckpt)
        if "not_applicable" in entry:
            return Cost(method, False, 0, None, 0, 0, batch, accum, ckpt, not_applicable=entry["not_applicable"])
        prof = entry["profiles"][self.gpu.profile]
        # Both the estimator's verdict and the stated memory: nothing recommended may exceed the GPU.
        if self.gpu.custom:
            fits = entry["peak_bytes"] + self.gpu.context_bytes <= self.gpu.memory_bytes
        else:
            fits = bool(prof["fits"]) and entry["peak_bytes"] <= self.gpu.memory_bytes
        return Cost(method, fits, int(entry["peak_bytes"]), prof.get("step_seconds"), int(entry["trainable_params"]),
                    int(entry["total_params"]), batch, accum, ckpt)

    def search(self, model: str, method: str, hps: dict[str, Any], batch: int) -> Cost:
        """The first configuration that fits, cheapest change first; the last one tried otherwise."""
        tried: list[Cost] = []
        for ckpt in (False, True):
            cost = self._cost(model, method, hps, batch, ckpt, 1)
            if cost.not_applicable or cost.fits:
                return self._explain(cost, batch)
            tried.append(cost)
            for micro in self._smaller_batches(model, method, hps, batch, ckpt):
                smaller = self._cost(model, method, hps, micro, ckpt, math.ceil(batch / micro))
                if smaller.fits:
                    return self._explain(smaller, batch)
                tried.append(smaller)
        if not any(c.batch_size == 1 and c.gradient_checkpointing for c in tried):
            # Nothing fits even the estimator's largest batch, so it offered no smaller one: the smallest
            # peak (what the remedy quotes) is at micro-batch 1 with checkpointing, not at the user's batch.
            smallest = self._cost(model, method, hps, 1, True, batch)
            if smallest.fits:
                return self._explain(smallest, batch)
            tried.append(smallest)
        last = min(tried, key=lambda c: c.peak_bytes)
        last.would_fit_with = self._remedies(method, tried)
        return last

    def _smaller_batches(self, model: str, method: str, hps: dict[str, Any], batch: int, ckpt: bool) -> list[int]:
        """Micro-batches that divide the effective batch exactly (so micro x accumulation is the user's batch)."""
        divisors = [b for b in range(batch - 1, 0, -1) if batch % b == 0]
        if self.gpu.custom:  # the borrowed card's max batch is for its memory, not the stated one: halve
            halves = [b for b in divisors if b <= batch // 2]
            return sorted({halves[0], 1}, reverse=True) if halves else []
        prof = self.raw(model, method, hps, batch, ckpt)["profiles"][self.gpu.profile]
        max_batch = int(prof.get("max_batch_size") or 0)
        return [next(b for b in divisors if b <= max_batch)] if 1 <= max_batch < batch and divisors else []

    def _explain(self, cost: Cost, batch: int) -> Cost:
        if cost.gradient_checkpointing:
            cost.notes.append("needs gradient checkpointing (~30% slower steps, recomputes activations)")
        if cost.batch_size < batch:
            cost.notes.append(f"micro-batch {cost.batch_size} x {cost.accumulation} gradient-accumulation steps "
                              f"(effective batch {cost.batch_size * cost.accumulation})")
        return cost

    def _remedies(self, method: str, tried: list[Cost]) -> list[str]:
        best = min(tried, key=lambda c: c.peak_bytes)
        remedies = []
        if method in QLORA_STANDS_IN_FOR:
            remedies.append("QLoRA (the same adapters on a 4-bit base model; see the qlora row)")
        setting = f"micro-batch {best.batch_size}" + (", gradient checkpointing" if best.gradient_checkpointing else "")
        remedies.append(f"a GPU with more than {(best.peak_bytes + self.gpu.context_bytes) / 2**30:.1f} GiB "
                        f"(its smallest peak, at {setting}; the stated GPU has "
                        f"{self.gpu.memory_bytes / 2**30:.0f} GiB)")
        return remedies


def search_in_parallel(costs: CostModel, model: str, todo: list[tuple[str, dict[str, Any]]], batch: int,
                       progress: bool) -> None:
    """Run `CostModel.search` for methods whose estimates must be traced, one process per CPU core, and keep
    what they computed in `costs`: a trace is single-threaded work of seconds to tens of seconds per method
    (BOFT's butterfly factors are ~20,000 ops a layer), independent between methods."""
    import multiprocessing
    import os
    import sys
    import time
    from concurrent.futures import ProcessPoolExecutor, as_completed

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    # A worker pays torch's imports (~3 s) once: not worth it for a method or two.
    workers = 1 if len(todo) < 3 else min(len(todo), cores)
    bar = None
    if progress:
        from tqdm import tqdm

        print(f"peftbench: {len(todo)} memory estimate(s) not shipped or cached for {model}: tracing them on "
              f"{workers} CPU core(s) (seconds to a minute each; cached afterwards)", file=sys.stderr)
        bar = tqdm(total=len(todo), desc="tracing", unit="method", file=sys.stderr)
    start = time.perf_counter()
    if workers == 1:
        for name, hps in todo:
            costs.search(model, name, hps, batch)
            if bar is not None:
                bar.update(1)
    else:
        from peftbench.cache import cache_writable

        cache_writable()  # an unusable cache is said here, once: the workers inherit that it was said
        args = (costs.gpu, costs.task_kind, costs.seq_len, costs.num_labels, costs.mixed_precision)
        # spawn, not fork: the parent may already run torch's thread pools, which a forked child can deadlock on.
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_search_entries, args, model, name, hps, batch) for name, hps in
                       sorted(todo, key=lambda t: t[0] not in SLOW_TO_TRACE)]  # longest first: less idle tail
            for future in as_completed(futures):
                costs.new.update(future.result())
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
        print(f"peftbench: traced in {time.perf_counter() - start:.0f} s", file=sys.stderr)


# Methods whose traces take the longest (many small ops per layer), started first by `search_in_parallel`.
SLOW_TO_TRACE = ("boft", "dora", "loha", "lokr", "adalora")


def _search_entries(args: tuple, model: str, method: str, hps: dict[str, Any], batch: int) -> dict[str, Any]:
    """In a worker process: the estimates one method's search computed."""
    costs = CostModel(*args)
    costs.search(model, method, hps, batch)
    return costs.new


# ---- multi-GPU hook (recommend --gpus N) ---------------------------------------------------------------------------
# Kept apart on purpose: the recommender is being rewritten; the lead wires this into `recommend --gpus N`.
def multi_gpu_fit(model: str, method: str, gpu: Gpu, task_kind: str, seq_len: int, batch: int,
                  max_gpus: int = 64, num_labels: int = 2) -> dict[str, Any] | None:
    """When `method` does not fit one `gpu`: the fewest GPUs of that card on which it fits and the cheapest
    strategy there (ddp < zero2 < fsdp < zero3 < offload), as {gpus, strategy, offload, per_gpu_peak_bytes,
    step_seconds}; None when nothing up to `max_gpus` fits. `batch` is the per-GPU micro-batch."""
    from dataclasses import asdict

    from peftbench.estimate.multi_gpu import smallest_fit

    if gpu.custom or gpu.profile == "cpu":
        return None  # a stated memory size borrows another card's profile: no interconnect to speak of
    # Stored like the one-card estimates: a warm call must not import torch to search strategies again.
    from peftbench.models.config_identity import model_identity

    key = key_of(meaning_key("estimates", "methods"), "multi_gpu", model_identity(model), method, gpu.profile,
                 task_kind, seq_len, batch, max_gpus, num_labels)
    stored = read_json("estimates.json").get(key)
    if stored is not None:
        return stored.get("fit")
    fit = smallest_fit(model, method, gpu.profile, max_gpus=max_gpus, task_kind=task_kind, seq_len=seq_len,
                       batch_size=batch, num_labels=num_labels)
    answer = asdict(fit) if fit is not None else None
    write_json("estimates.json", {key: {"fit": answer}})
    return answer
