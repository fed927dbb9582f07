"""How long an 8B-shaped estimate takes from the command line, side by side in one run. Target: <= 5 s cold.

- cold, shipped shape fit: fresh interpreter, empty cache, Llama-3.1-8B preset (answered without torch);
- cold, tracing: the same config copied to a file with one extra key, so no shipped fit matches it and the
  estimator imports torch, transformers and peft and traces (what any model without a shipped fit costs);
- cached: the same call again, its answer on disk.
Each is the median of three alternating rounds; the ratio is what to compare across machines.

Run: `python benchmarks/estimate_speed.py` — prints one line per measurement.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPES = (["--batch-size", "4", "--seq-len", "1024"], ["--batch-size", "3", "--seq-len", "3000"])
PRESET = Path(__file__).resolve().parent.parent / "peftbench" / "models" / "presets" / "llama-3.1-8b" / "config.json"


def cli_seconds(model: str, shape: list[str], cache: str) -> tuple[float, str]:
    env = {**os.environ, "PEFTBENCH_CACHE": cache, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "peftbench", "estimate", "--model", model, "--method", "lora",
                          *shape, "--gpu", "16GB", "--json"], env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, json.loads(out.stdout)["settings"]["answered_from"]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "llama-copy" / "config.json"
        copy.parent.mkdir()
        copy.write_text(json.dumps({**json.loads(PRESET.read_text()), "_comment": "copy: no shipped fit"}))
        for shape in SHAPES:
            fitted, traced, cached = [], [], []
            for _ in range(3):
                with tempfile.TemporaryDirectory() as cache:
                    seconds, source = cli_seconds("llama-3.1-8b", shape, cache)
                    fitted.append(seconds)
                with tempfile.TemporaryDirectory() as cache:
                    seconds, traced_source = cli_seconds(str(copy), shape, cache)
                    traced.append(seconds)
                    cached.append(cli_seconds(str(copy), shape, cache)[0])
            label = " ".join(shape)
            print(f"{label}: cold, shipped fit {statistics.median(fitted):.2f} s ({source[:10]}); cold, tracing "
                  f"{statistics.median(traced):.2f} s ({traced_source}); cached {statistics.median(cached):.2f} s; "
                  f"tracing / fit = {statistics.median(traced) / statistics.median(fitted):.1f}x")


if __name__ == "__main__":
    main()
