"""What a run measures about the machine: peak memory, the device, library versions."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any

_PROC_STATUS = Path("/proc/self/status")


def _status_kib(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", _PROC_STATUS.read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


def current_rss() -> int | None:
    return _status_kib("VmRSS")


def peak_rss() -> int | None:
    """The process's high-water RSS (VmHWM); falls back to getrusage where /proc is missing."""
    value = _status_kib("VmHWM")
    if value is None:
        import resource

        value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return value


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux `clear_refs` 5), so a later peak covers training only."""
    try:
        Path(f"/proc/{os.getpid()}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class CudaMemory:
    """Peak CUDA memory through torch and device-wide use through NVML (pynvml), sampled per step."""

    def __init__(self, device_index: int = 0) -> None:
        import torch

        self.torch = torch
        torch.cuda.reset_peak_memory_stats(device_index)
        self.device_index = device_index
        self.nvml_peak: int | None = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
            self._nvml = pynvml
        except Exception:  # NVML missing or unusable: torch's own counters still stand
            self._nvml = None

    def sample(self) -> None:
        if self._nvml is not None:
            used = int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used)
            self.nvml_peak = max(self.nvml_peak or 0, used)

    def report(self) -> dict[str, int | None]:
        self.sample()
        return {"cuda_max_allocated_bytes": int(self.torch.cuda.max_memory_allocated(self.device_index)),
                "cuda_max_reserved_bytes": int(self.torch.cuda.max_memory_reserved(self.device_index)),
                "nvml_peak_used_bytes": self.nvml_peak}


MACHINE_ID_ENV = "PEFTBENCH_MACHINE_ID"
_MACHINE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def machine_id() -> str:
    """A random id for this machine (well: this cache directory), made on first use; `$PEFTBENCH_MACHINE_ID`
    overrides it.

    Resume skips only runs recorded *here*: committed reference results measured elsewhere are evidence,
    not a reason to skip measuring this machine. A hostname would not do (containers share or rotate them).
    The override continues one campaign of runs across machines that each start with an empty cache (the
    reference runs go on over many short-lived machines of one kind): resume then skips what that id
    recorded. Raises UserError for an id that is not 1-64 letters, digits, '-' or '_'.

    Where no id can be kept (an unusable cache, a stored id that is a folder or not text) this command gets a
    fresh one, handed to the processes it starts through the override, so that its workers record the id
    its resume reads.
    """
    from peftbench.errors import UserError, shown

    override = os.environ.get(MACHINE_ID_ENV)
    if override is not None:
        if not _MACHINE_ID.fullmatch(override):
            raise UserError(f"${MACHINE_ID_ENV}={shown(override)} is not a machine id: use 1-64 letters, "
                            "digits, '-' or '_'")
        return override
    stored = _stored_machine_id()
    if stored is None:
        stored = os.environ[MACHINE_ID_ENV] = _new_machine_id()
    return stored


def _stored_machine_id() -> str | None:
    """The id kept in the cache, made there first if there is none; None (said once) when none can be kept."""
    import contextlib

    from peftbench.cache import cache_root, cache_writable, warn_cache

    path = cache_root() / "machine-id"
    if not path.exists() and cache_writable():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(_new_machine_id())
            os.link(tmp, path)  # atomic and never overwrites: of two first calls, one id wins for both
        except OSError:
            pass  # another process made it meanwhile (read below), or it cannot be made (said below)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
    try:
        with open(path, "rb") as handle:
            stored = handle.read(128).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        stored = None
    if stored is not None and _MACHINE_ID.fullmatch(stored):
        return stored
    if path.exists() or cache_writable():  # an unusable cache was said already; a damaged id is said here
        warn_cache("holds a machine-id that is not one (a folder, binary or malformed)",
                   f"this command uses a fresh id, so resume skips no earlier run (remove {path} for a new id)")
    return None


def _new_machine_id() -> str:
    import uuid

    return uuid.uuid4().hex[:16]


def device_info(device: str, threads: int) -> dict[str, Any]:
    """The machine a run measured, including how many runs shared it (their timings interfere)."""
    import torch

    concurrent = int(os.environ.get("PEFTBENCH_CONCURRENT_RUNS", "1"))
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        return {"type": "cuda", "name": props.name, "memory_bytes": int(props.total_memory), "threads": threads,
                "concurrent_runs": concurrent}
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"type": "cpu", "name": cpu_name(), "memory_bytes": int(memory), "cores": os.cpu_count(),
            "threads": threads, "concurrent_runs": concurrent}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in ("torch", "transformers", "peft", "datasets", "bitsandbytes", "peftbench"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    return versions
