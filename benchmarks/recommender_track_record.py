"""The recommender's track record (leave-one-source-out over the corpus, leave-one-task-out over the reference
runs) against the baselines, written to benchmarks/recommender_track_record.md, plus cold-call timings.

    python benchmarks/recommender_track_record.py            # writes the markdown; times the example queries
    python benchmarks/recommender_track_record.py --ship     # also refresh peftbench/recommend/data/

`--ship` copies the method metadata and the memory estimates of the example queries into the package, so a
fresh install answers them in under 3 s (see peftbench/recommend/store.py). Nothing in the quality model is
cached: it is fitted per query in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "recommender_track_record.md"
EXAMPLES = [
    ["--gpu", "16GB", "--task", "summarization"],  # README's first example: picks the model too
    ["--hardware", "l40s", "--model", "llama-3.2-3b", "--task", "generation", "--train-examples", "20000",
     "--seq-len", "768"],
    ["--gpu", "24GB", "--model", "llama-3.1-8b", "--task", "classification", "--train-examples", "5000",
     "--seq-len", "256"],
    ["--gpu", "8GB", "--model", "qwen2.5-1.5b", "--task", "classification", "--train-examples", "2000",
     "--seq-len", "256"],
    ["--gpu", "24GB", "--model", "mistral-7b", "--task", "summarization", "--train-examples", "50000",
     "--seq-len", "1024"],
    # one independent source in the regime (GPT-2 tables): a provisional first place
    ["--gpu", "48GB", "--model", "llama-3.2-1b", "--task", "generation", "--train-examples", "300"],
]


def cold_call(args: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "peftbench", "recommend", *args], capture_output=True, text=True)
    return time.perf_counter() - start, proc.stdout if proc.returncode == 0 else f"failed: {proc.stderr.strip()}"


def ship() -> None:
    from peftbench.recommend.store import SHIPPED_DIR, user_dir

    SHIPPED_DIR.mkdir(exist_ok=True)
    for name in ("estimates.json", "corpus_points.json", "sweeps.json", "forgetting.json"):
        if (user_dir() / name).is_file():
            shutil.copy(user_dir() / name, SHIPPED_DIR / name)
    (SHIPPED_DIR / "fitted.json").unlink(missing_ok=True)  # the ridge fit is gone: nothing fitted is cached
    print(f"shipped cache -> {SHIPPED_DIR}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--ship", action="store_true")
    parser.add_argument("--no-examples", action="store_true", help="only the track record")
    args = parser.parse_args()
    from peftbench.recommend.evaluate import evaluate
    from peftbench.recommend.track_record_table import format_table

    start = time.perf_counter()
    table = format_table(evaluate(results=args.results))
    load = os.getloadavg()[0]
    lines = ["# Recommender track record", "",
             f"`python benchmarks/recommender_track_record.py` ({time.perf_counter() - start:.0f} s for both "
             "protocols). Regret: best measured score in the held-out comparison minus the pick's, in the "
             "metric's points. Top-1 / top-3: the pick is the measured best / among the measured best three "
             "methods. Spearman ρ: per comparison with at least three methods, between the order shown and the "
             "measured scores, averaged (n = comparisons where it is defined). Baselines pick LoRA (nearest "
             "measured rank), or full FT; where their method was not measured they score a blind pick's mean.",
             "", table, "", f"Timings below were taken at a 1-minute load average of {load:.1f} on {os.cpu_count()} "
             "cores: on a busy machine they are upper bounds."]
    print(table)
    if not args.no_examples:
        lines += ["", "## Example queries (fresh process each)", ""]
        for example in EXAMPLES:
            first, out = cold_call(example)
            second, _ = cold_call(example)
            print(f"{' '.join(example)}: first {first:.1f} s, cached {second:.2f} s")
            lines += [f"`peftbench recommend {' '.join(example)}` — first call {first:.1f} s, cached {second:.2f} s",
                      "", "```", *out.strip().splitlines()[:40], "```", ""]
    if args.ship:
        ship()
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
