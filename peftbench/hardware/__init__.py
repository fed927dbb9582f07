"""Hardware profiles: the GPU catalogue (profiles.json, sources cited per card) and this machine's CPU.

`resolve(["16GB"])` understands memory classes: "any 16 GB card" means the most conservative profile of
that class (least usable memory, then least throughput), so a "fits" answer holds for every such card.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from peftbench.errors import UserError, did_you_mean
from peftbench.hardware.profile import Profile

DATA = Path(__file__).with_name("profiles.json")


@cache
def _data() -> dict[str, Any]:
    return json.loads(DATA.read_text())


def allocator() -> dict[str, float]:
    """CUDA caching-allocator overheads (fragmentation share, cuBLAS workspace)."""
    return {k: v for k, v in _data()["allocator"].items() if not k.startswith("_")}


def collectives() -> dict[str, float]:
    """Share of a link's per-direction rate that collectives reach (an assumption, see profiles.json)."""
    return {k: v for k, v in _data()["collectives"].items() if not k.startswith("_")}


def gpu_profiles() -> dict[str, Profile]:
    eff = {k: v for k, v in _data()["efficiency"].items() if not k.startswith("_")}
    return {p["name"]: Profile(**p, efficiency=eff) for p in _data()["profiles"]}


def catalogue(include_cpu: bool = True) -> dict[str, Profile]:
    profiles = gpu_profiles()
    if include_cpu:
        from peftbench.hardware.cpu import cpu_profile

        profiles["cpu"] = cpu_profile()
    return profiles


def match_memory_class(text: str) -> Profile:
    """`16GB`, `24 GB`, `80g` → the conservative profile among cards of that nominal size."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:gb|g|gib)?\s*", text.lower())
    if not m:
        raise UserError(f"--gpu expects a memory size like 16GB, not '{text}'")
    size = float(m.group(1))
    matches = [p for p in gpu_profiles().values() if p.nominal_gb == size]
    if not matches:
        sizes = sorted({int(p.nominal_gb) for p in gpu_profiles().values()})
        nearest = min(sizes, key=lambda s: (abs(s - size), s))
        raise UserError(f"no GPU profile with {text}; did you mean {nearest}GB? "
                        f"(known sizes: {', '.join(f'{s}GB' for s in sizes)})")
    return min(matches, key=lambda p: (p.memory_bytes, p.peak_flops("bf16"), p.bandwidth_gbs))


def profile_name(name: str) -> str:
    """The catalogue key a `--hardware`/`--gpu` value names: a profile (`t4`, `cpu`), a card's plain name
    when one profile starts with it (`h100`), or a memory class (`16GB`). Reads only profiles.json, so a typo
    is refused before this machine's CPU is measured or anything heavy is imported."""
    key = name.lower()
    known = [*gpu_profiles(), "cpu"]
    # A card's plain name ("h100", "a100") is how people say it: take it when one profile starts with it.
    prefixed = [k for k in known if k.startswith(f"{key}-")]
    if key in known:
        return key
    if len(prefixed) == 1:
        return prefixed[0]
    if len(prefixed) > 1:
        raise UserError(f"hardware '{name}' is ambiguous: say which of {', '.join(prefixed)}")
    if re.search(r"\d", key) and re.fullmatch(r"[\d.]+\s*(gb|g|gib)?", key):
        return match_memory_class(key).name
    plain_names = {k.split("-")[0] for k in known}
    raise UserError(f"unknown hardware '{name}'{did_you_mean(key, [*known, *plain_names])} "
                    f"(valid: {', '.join(known)}, or a size like 16GB)")


def resolve(names: list[str] | None) -> dict[str, Profile]:
    """Profiles by name (`t4`, `a100-80gb`, `cpu`) or memory class (`16GB`); None → every GPU profile."""
    if not names:
        return gpu_profiles()
    keys = [profile_name(name) for name in names]  # every name checked before the CPU is measured
    known = catalogue(include_cpu="cpu" in keys)
    return {key: known[key] for key in keys}
