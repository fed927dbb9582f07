"""Print the recommender's leave-one-task-out track record, and time a cold `peftbench recommend` call.

    python benchmarks/recommender_track_record.py            # table (markdown) + cold-call timing
    python benchmarks/recommender_track_record.py --ship     # also refresh peftbench/recommend/data/

`--ship` copies the fitted quality model, method metadata and the estimates of the example queries into
the package, so a fresh clone answers them in under 3 s (see peftbench/recommend/store.py).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

EXAMPLES = [["--gpu", "16GB", "--task", "summarization"],
            ["--gpu", "8GB", "--model", "llama-3.1-8b", "--task", "summarization"],
            ["--gpu", "80GB", "--model", "minilm", "--task", "classification"],
            ["--gpu", "16GB", "--task", "classification"],
            ["--gpu", "24GB", "--task", "translation"],
            ["--gpu", "8GB", "--model", "llama-3.1-8b", "--task", "classification"]]


def cold_call(args: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "peftbench", "recommend", *args], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        print(f"  failed: {proc.stderr.strip()}")
    return elapsed


def ship(results: Path | None) -> None:
    """Copy the caches into the package: the fit for the current results only (not test fixtures')."""
    import json

    from peftbench.recommend.fitting import default_evidence
    from peftbench.recommend.store import SHIPPED_DIR, meaning_key, user_dir

    SHIPPED_DIR.mkdir(exist_ok=True)
    for name in ("methods.json", "estimates.json"):
        if (user_dir() / name).is_file():
            shutil.copy(user_dir() / name, SHIPPED_DIR / name)
    key = f"{meaning_key('recommender', 'methods')}:{default_evidence(results).files_hash}"
    fitted = json.loads((user_dir() / "fitted.json").read_text())
    (SHIPPED_DIR / "fitted.json").write_text(json.dumps({key: fitted[key]} if key in fitted else {}))
    print(f"shipped cache -> {SHIPPED_DIR}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--ship", action="store_true")
    args = parser.parse_args()
    from peftbench.recommend.evaluate import evaluate, format_table

    print(format_table(evaluate(results=args.results)))
    print("\nCold `peftbench recommend` calls (fresh process; first call may fill the caches):")
    for example in EXAMPLES:
        first, second = cold_call(example), cold_call(example)
        print(f"  {' '.join(example):55s} first {first:6.1f} s, cached {second:5.2f} s")
    if args.ship:
        ship(args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
