"""One hardware profile: a GPU card of the catalogue or this machine's CPU.

Its own module so that `hardware.cpu` builds a profile without importing the catalogue that imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Profile:
    name: str
    title: str
    kind: str  # cuda | cpu
    memory_bytes: int
    bandwidth_gbs: float
    tflops: dict[str, float | None]
    bf16_supported: bool
    nominal_gb: float = 0
    cuda_context_bytes: int = 0
    source: str = ""
    note: str = ""
    efficiency: dict[str, float] = field(default_factory=dict)
    # GPU-to-GPU link of a multi-GPU machine of this card and its host link, GB/s per direction, with a
    # source (`peftbench.estimate.distributed`); empty for the CPU profile.
    interconnect: dict[str, Any] = field(default_factory=dict)

    def precision(self, dtype: str) -> str:
        """The 16-bit format actually used: bf16 falls back to fp16 mixed precision where unsupported."""
        return "fp16" if dtype == "bf16" and not self.bf16_supported else dtype

    def peak_flops(self, dtype: str) -> float:
        value = self.tflops.get(self.precision(dtype)) or self.tflops["fp32"]
        return float(value) * 1e12  # type: ignore[arg-type]  # every profile states fp32 (profiles.json)
