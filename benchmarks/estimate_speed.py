"""How long an 8B-shaped estimate takes: cold (fresh interpreter, empty cache), warm in-process (libraries
imported, trace cache empty) and cached (fresh interpreter, answer on disk). Target: ≤ 5 s.

Run: `python benchmarks/estimate_speed.py` — prints one line per measurement.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

ARGS = ["--model", "llama-3.1-8b", "--method", "lora", "--batch-size", "4", "--seq-len", "1024", "--gpu", "16GB",
        "--json"]


def cli_seconds(cache: str) -> float:
    env = {**os.environ, "PEFTBENCH_CACHE": cache, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "peftbench", "estimate", *ARGS], env=env, check=True,
                   capture_output=True)
    return time.perf_counter() - start


def warm_in_process(cache: str) -> tuple[float, float]:
    os.environ["PEFTBENCH_CACHE"] = cache
    import torch

    torch.set_num_threads(1)
    import peft  # noqa: F401
    import transformers  # noqa: F401

    from peftbench.estimate import estimate

    start = time.perf_counter()
    estimate("llama-3.1-8b", "dora", batch_size=4, seq_len=1024, hardware=["16GB"])
    traced = time.perf_counter() - start
    start = time.perf_counter()
    estimate("llama-3.1-8b", "dora", batch_size=4, seq_len=1024, hardware=["16GB"])
    return traced, time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        cold = cli_seconds(cache)
        cached = cli_seconds(cache)
    with tempfile.TemporaryDirectory() as cache:
        traced, memo = warm_in_process(cache)
    print(f"cold CLI (imports + 2 traces): {cold:.2f} s")
    print(f"cached CLI (fresh interpreter, answer on disk): {cached:.2f} s")
    print(f"in-process, libraries imported, no cache: {traced:.2f} s")
    print(f"in-process, cached: {memo * 1000:.1f} ms")


if __name__ == "__main__":
    main()
