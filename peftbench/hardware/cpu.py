"""The profile of the machine we run on: cores and memory read from the OS, throughput measured once.

The matmul and copy micro-benchmarks take ~1 s and run once per (CPU model, thread count); the result
is cached as JSON under the peftbench cache directory.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from peftbench.hardware.profile import Profile
from peftbench.telemetry import cpu_name

# Share of the measured matmul / copy rate a training step reaches on this CPU. Calibrated by
# benchmarks/estimator_accuracy.py from real steps of the packaged models (see estimator_accuracy.md).
CPU_EFFICIENCY = {"matmul": 0.75, "bandwidth": 0.5, "kernel_seconds": 2e-5}


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _memory_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _measure(threads: int) -> dict[str, float]:
    """Best-of-3 GFLOP/s of a 1024² matmul per dtype and GB/s of a 64 MiB copy, at `threads` threads."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out: dict[str, float] = {}
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            a = torch.randn(1024, 1024, dtype=dtype)
            a @ a  # warm up the kernel choice
            best = min(_timed(lambda a=a: a @ a) for _ in range(3))
            out[name] = 2 * 1024**3 / best / 1e12
        src = torch.empty(16 * 2**20)
        dst = torch.empty_like(src)
        best = min(_timed(lambda: dst.copy_(src)) for _ in range(3))
        out["bandwidth_gbs"] = 2 * src.numel() * 4 / best / 1e9
        return out
    finally:
        torch.set_num_threads(previous)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cpu_profile(threads: int | None = None) -> Profile:
    from peftbench.cache import cache_root, read_json, write_json_atomic

    if threads is None:
        import torch

        threads = torch.get_num_threads()
    model = cpu_name()
    path = cache_root() / "hardware" / "cpu.json"
    key = f"{model}|{threads}"
    cached = read_json(path)
    cached = cached if isinstance(cached, dict) else {}
    if key not in cached:
        cached[key] = _measure(threads)
        write_json_atomic(path, cached, indent=1)
    m = cached[key]
    flags = _cpu_flags()
    native_bf16 = bool(flags & {"avx512_bf16", "amx_bf16"})
    return Profile(
        name="cpu", title=f"{model} ({os.cpu_count()} cores, {threads} torch threads)", kind="cpu",
        memory_bytes=_memory_bytes(), bandwidth_gbs=round(m["bandwidth_gbs"], 2),
        tflops={"fp32": m["fp32"], "bf16": m["bf16"], "fp16": None}, bf16_supported=True,
        source=f"measured on this machine: 1024² matmul and 64 MiB copy at {threads} threads, cached in {path}",
        note="" if native_bf16 else "no avx512_bf16/amx: bf16 is emulated and slower than fp32",
        efficiency=dict(CPU_EFFICIENCY),
    )
