"""What a trained method costs at inference, measured after training on the run's own eval inputs.

Three variants run the same inputs: the base model (freshly loaded), the tuned model as trained
(adapter unmerged) and, where the method can merge (`peftbench.serving`), the tuned model after peft's
`merge_and_unload`. Their timings are interleaved round by round and the fastest round of each kept, so
a slow moment of a shared CPU hits every variant alike and the ratios to the base stay comparable.

- classification / multiple choice: latency = one forward per example at batch 1; throughput = examples
  per second of one batched forward over the same examples.
- generation: latency = a request's wall time (prefill + greedy decoding of exactly `new_tokens`) per
  generated token at batch 1, with the prefill (time to first token) and the decode time per token
  beside it; throughput = generated tokens per second of one batched request over the same prompts.
- overhead = ratio to the base of `unit_ms`, timed by process CPU time on a CPU (other processes' load
  does not inflate it; wall time does) and wall time on CUDA, with burst-robust statistics (`_figures`).
- memory: the variant's weight bytes plus the peak growth during its batched pass (CPU: process RSS
  high-water mark, reset before the pass as `telemetry.reset_peak_rss` does for training; CUDA:
  `max_memory_allocated` growth).

Kept cheap (a few examples, a few tokens, two timed rounds): sized to add ~10-20% to a CPU run's time.
"""

from __future__ import annotations

import copy
import functools
import gc
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from peftbench.serving import serving


@dataclass(frozen=True)
class InferenceSettings:
    examples: int = 8  # classification: eval examples timed
    prompts: int = 2  # generation and multiple choice (a decoder reads a long prompt): eval prompts timed
    new_tokens: int = 6  # generation: tokens decoded per request
    rounds: int = 2  # timed rounds after one warm-up call per variant; per example the fastest is kept


@dataclass
class Figures:
    """One variant's measurement; times in milliseconds."""

    latency_ms: float  # wall time per example, or per generated token (request time / new tokens)
    unit_ms: float  # time per unit by the cost's `clock`, burst-robust (see `_figures`): the ratios use it
    throughput: float  # examples/s or generated tokens/s (wall) at batch = the examples timed
    weights_bytes: int
    activation_peak_bytes: int | None  # peak growth during the batched pass
    peak_bytes: int | None  # weights + activation peak
    prefill_ms: float | None = None  # generation: time to the first token (by the cost's `clock`)
    decode_ms_per_token: float | None = None  # generation: each further token (by the cost's `clock`)


@dataclass
class InferenceCost:
    kind: str
    unit: str  # "example" | "generated token"
    device: str
    threads: int
    examples: int
    new_tokens: int | None
    mergeable: bool
    merge_note: str  # why it cannot merge, or what merging failed on
    base: Figures
    unmerged: Figures
    merged: Figures | None
    clock: str  # "cpu" (process CPU time, on CPU devices) or "wall" (CUDA): the clock of the ratios
    overhead_unmerged: float  # latency ratio to the base model
    overhead_merged: float | None
    extra_positions: int = 0  # virtual tokens every request carries (soft prompts)
    seconds: float = 0.0  # wall time this measurement took
    notes: list[str] = field(default_factory=list)

    @property
    def overhead_served(self) -> float:
        """The overhead of the cheapest way to serve it: merged where it can merge."""
        return self.overhead_merged if self.overhead_merged is not None else self.overhead_unmerged

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "overhead_served": self.overhead_served}


def measure_inference(model: Any, tokenizer: Any, task: Any, prepared: Any, method: str, *,
                      load_base: Callable[[], Any], device: str = "cpu",
                      settings: InferenceSettings | None = None) -> InferenceCost:
    """Measure base, unmerged and (where possible) merged inference on the run's eval inputs.

    `load_base` returns a fresh base model (same head, dtype and device as the run's). `model` is left as
    it was: merging works on a copy.
    """
    settings = settings or InferenceSettings()
    started = time.perf_counter()
    workload = _workload(task, tokenizer, prepared, settings, device)
    facts = serving(method)
    variants: dict[str, Any] = {"base": load_base().eval(), "unmerged": model.eval()}
    merge_note = facts.reason
    if facts.mergeable:
        try:
            variants["merged"] = copy.deepcopy(model).merge_and_unload().eval()
        except Exception as exc:  # a peft version that cannot merge this config: measured unmerged only
            merge_note = f"merge_and_unload failed: {type(exc).__name__}: {exc}"
    figures = _interleaved(variants, workload, settings.rounds, device)
    for name in [n for n in variants if n != "unmerged"]:
        variants[name] = None
    gc.collect()
    base, merged = figures["base"], figures.get("merged")
    return InferenceCost(
        kind=task.kind, unit=workload.unit, device=device, threads=torch.get_num_threads(),
        examples=workload.count, new_tokens=settings.new_tokens if task.kind == "generation" else None,
        mergeable="merged" in figures, merge_note=merge_note, base=base, unmerged=figures["unmerged"],
        merged=merged, clock=_clock_name(device), overhead_unmerged=_ratio(figures["unmerged"], base),
        overhead_merged=_ratio(merged, base) if merged else None,
        extra_positions=_virtual_tokens(model), seconds=round(time.perf_counter() - started, 3),
        notes=workload.notes)


def _ratio(figures: Figures, base: Figures) -> float:
    return round(figures.unit_ms / base.unit_ms, 4)


def _clock_name(device: str) -> str:
    return "wall" if device.startswith("cuda") else "cpu"


class _Clock:
    """Wall time and process CPU time together. On a CPU shared with other processes, wall time also counts
    the time this process waited for a core, which has nothing to do with the model: the ratios between
    variants use CPU time there (measured: wall-time ratios of identical models reached 2x under load)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def since(self, start: _Clock) -> tuple[float, float]:
        return self.wall - start.wall, self.cpu - start.cpu


def _virtual_tokens(model: Any) -> int:
    config = getattr(model, "active_peft_config", None)
    return int(getattr(config, "num_virtual_tokens", 0) or 0) if getattr(config, "is_prompt_learning", False) else 0


class _Workload:
    """The timed calls for one task kind: `single(model, i)` at batch 1 and `batched(model)`."""

    unit = "example"

    def __init__(self, singles: list[dict[str, torch.Tensor]], batch: dict[str, torch.Tensor]) -> None:
        self.singles, self.batch = singles, batch
        self.count = len(singles)
        self.notes: list[str] = []

    clock = "cpu"

    @torch.no_grad()
    def single(self, model: Any, i: int) -> dict[str, Any]:
        wall, cpu = _timed(lambda: model(**self.singles[i]))
        return {"wall": wall, "unit": wall if self.clock == "wall" else cpu}

    @torch.no_grad()
    def batched(self, model: Any) -> float:
        return _timed(lambda: model(**self.batch))[0]

    def warm(self, model: Any) -> None:
        """One untimed call: first-call costs (allocations, kernel choice) are not the model's."""
        self.single(model, 0)

    def work_per_batch(self) -> int:
        return self.count


class _Generation(_Workload):
    unit = "generated token"

    def __init__(self, singles: list[dict[str, torch.Tensor]], batch: dict[str, torch.Tensor], new_tokens: int,
                 pad_token_id: int | None) -> None:
        super().__init__(singles, batch)
        self.new_tokens, self.pad = new_tokens, pad_token_id

    def _generate(self, model: Any, inputs: dict[str, torch.Tensor], stamps: list[_Clock] | None = None) -> None:
        from transformers import StoppingCriteria, StoppingCriteriaList

        class Stamp(StoppingCriteria):  # called once per generated token: its times split prefill from decode
            def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
                if stamps is not None:
                    stamps.append(_Clock())
                return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

        model.generate(**inputs, max_new_tokens=self.new_tokens, min_new_tokens=self.new_tokens, do_sample=False,
                       pad_token_id=self.pad, stopping_criteria=StoppingCriteriaList([Stamp()]))

    @torch.no_grad()
    def single(self, model: Any, i: int) -> dict[str, Any]:
        stamps: list[_Clock] = []
        start = _Clock()
        self._generate(model, self.singles[i], stamps)
        _sync()
        wall, cpu = _Clock().since(start)
        pick = 0 if self.clock == "wall" else 1
        marks = [start, *stamps]
        steps = [marks[k + 1].since(marks[k])[pick] for k in range(len(marks) - 1)]  # prefill, then each decode
        return {"wall": wall / self.new_tokens, "unit": (wall, cpu)[pick] / self.new_tokens,
                "prefill": steps[0] if steps else (wall, cpu)[pick], "steps": steps[1:]}

    @torch.no_grad()
    def batched(self, model: Any) -> float:
        return _timed(lambda: self._generate(model, self.batch))[0]

    @torch.no_grad()
    def warm(self, model: Any) -> None:
        model.generate(**self.singles[0], max_new_tokens=2, do_sample=False, pad_token_id=self.pad)

    def work_per_batch(self) -> int:
        return self.count * self.new_tokens


def _workload(task: Any, tokenizer: Any, prepared: Any, settings: InferenceSettings, device: str) -> _Workload:
    rows = prepared.eval_rows
    if task.kind == "classification":
        rows = rows[: settings.examples]
        strip = [{k: v for k, v in r.items() if k != "labels"} for r in rows]
        singles = [_to(prepared.collate([r]), device) for r in strip]
        workload = _Workload(singles, _to(prepared.collate(strip), device))
        workload.clock = _clock_name(device)
        return workload
    prompts = [r["prompt"] for r in rows[: settings.prompts]]
    truncate = {"truncation": True, "max_length": task.max_length - 1} if task.kind == "multiple_choice" else {}
    singles = [_to(tokenizer([p], return_tensors="pt", **truncate), device) for p in prompts]
    batch = _to(tokenizer(prompts, return_tensors="pt", padding=True, **truncate), device)
    workload = _Workload(singles, batch) if task.kind != "generation" else \
        _Generation(singles, batch, settings.new_tokens, tokenizer.pad_token_id)
    workload.clock = _clock_name(device)
    return workload


def _to(batch: Any, device: str) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in dict(batch).items() if k != "labels"}


def _interleaved(variants: dict[str, Any], workload: _Workload, rounds: int, device: str) -> dict[str, Figures]:
    """Warm every variant up, then time them in turn, example by example, round by round; keep each one's
    fastest time per example. Alternating at this grain shares any slow moment of the machine between them."""
    for model in variants.values():
        workload.warm(model)
    timings: dict[str, dict[int, list[dict[str, Any]]]] = {name: {} for name in variants}
    for round_index in range(rounds):
        order = list(variants) if round_index % 2 == 0 else list(reversed(variants))  # no variant always first
        for i in range(workload.count):
            for name in order:
                timings[name].setdefault(i, []).append(workload.single(variants[name], i))
    out = {}
    for name, model in variants.items():  # one batched pass each, warm by now: throughput and peak memory
        seconds, memory = _peak_growth(functools.partial(workload.batched, model), device)
        out[name] = _figures(timings[name], seconds, memory, model, workload)
    return out


def _figures(timings: dict[int, list[dict[str, Any]]], batched_seconds: float, memory: int | None, model: Any,
             workload: _Workload) -> Figures:
    """Per example, its fastest round; averaged over examples. A generated token's time is rebuilt from the
    fastest prefill per prompt and the lower quartile of every decode step timed (a dozen or more per
    variant): a burst of load on a shared machine then moves no variant's figure on its own."""
    fastest = [min(runs, key=lambda t: t["unit"]) for runs in timings.values()]

    def mean_ms(values: list[float]) -> float:
        return round(1000 * sum(values) / len(values), 3)

    prefill = decode = None
    unit = mean_ms([t["unit"] for t in fastest])
    if "steps" in fastest[0]:
        steps = sorted(step for runs in timings.values() for t in runs for step in t["steps"])
        prefill = mean_ms([min(t["prefill"] for t in runs) for runs in timings.values()])
        decode = round(1000 * steps[len(steps) // 4], 3) if steps else 0.0
        new_tokens = workload.new_tokens  # type: ignore[attr-defined]
        unit = round((prefill + (new_tokens - 1) * decode) / new_tokens, 3)
    weights = _weight_bytes(model)
    return Figures(latency_ms=mean_ms([t["wall"] for t in fastest]), unit_ms=unit,
                   throughput=round(workload.work_per_batch() / batched_seconds, 3), weights_bytes=weights,
                   activation_peak_bytes=memory, peak_bytes=weights + memory if memory is not None else None,
                   prefill_ms=prefill, decode_ms_per_token=decode)


def _peak_growth(run: Callable[[], float], device: str) -> tuple[float, int | None]:
    """`run`'s seconds and its peak memory growth: CUDA allocated bytes, or the process RSS high-water mark."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        seconds = run()
        return seconds, int(torch.cuda.max_memory_allocated() - before)
    from peftbench import telemetry

    reset = telemetry.reset_peak_rss()
    rss_before = telemetry.current_rss()
    seconds = run()
    peak = telemetry.peak_rss()
    if not reset or peak is None or rss_before is None:
        return seconds, None
    return seconds, max(0, peak - rss_before)


def _weight_bytes(model: Any) -> int:
    """Bytes of the parameters and buffers the variant holds, tied tensors counted once."""
    seen: set[int] = set()
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall, CPU) seconds of `fn`."""
    start = _Clock()
    fn()
    _sync()
    return _Clock().since(start)


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
