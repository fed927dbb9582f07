"""Run the input fuzz tests' strategies with many more cases and count how many held.

    python benchmarks/fuzz_counts.py [--scale 1.0]

Same strategies and properties as tests/test_fuzz_inputs.py (tests/fuzz_cases.py), a fixed seed, no
shrinking (every failure is counted, not minimised). A case holds when it is refused with exit code 2,
exactly one stderr line and nothing written, or accepted as valid. Writes benchmarks/fuzz_counts.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ["PEFTBENCH_CACHE"] = tempfile.mkdtemp(prefix="peftbench-fuzz-cache-")  # never the user's cache

SEED = 20240613


def _run_e2e(tokens_bad: tuple[list[str], str]) -> str:
    from fuzz_cases import assert_refused

    tokens, bad = tokens_bad
    return assert_refused(["run", *tokens, bad])


def _estimate(case: tuple[list[str], bool]) -> str:
    from fuzz_cases import assert_refused

    return assert_refused(case[0], expect_refusal=case[1])


def _recommend(argv: list[str]) -> str:
    from fuzz_cases import assert_refused

    return assert_refused(argv)


def _suite_e2e(text: str) -> str | None:
    from fuzz_cases import assert_refused, check_suite

    if check_suite(text) != "refused":
        return None  # an accepted suite would start training: not a case here
    with tempfile.TemporaryDirectory(prefix="peftbench-fuzz-") as folder:
        path = Path(folder) / "suite.yaml"
        path.write_text(text, encoding="utf-8")
        outcome = assert_refused(["run", f"suite={path}"])
        assert [p.name for p in Path(folder).iterdir()] == ["suite.yaml"]
    return outcome


def cases() -> list[tuple[str, Any, Callable[[Any], str | None], int]]:
    import fuzz_cases as fc
    from hypothesis import strategies as st

    return [
        ("`run` overrides (plan built, never trained)", fc.run_overrides(), fc.check_plan, 400),
        ("`run` command lines with one bad value, end to end", st.tuples(fc.run_overrides(), st.sampled_from(
            fc.SURE_BAD)), _run_e2e, 40),
        ("`estimate` flags (shape-fit path or refused)", fc.estimate_argv(), _estimate, 200),
        ("`recommend` flags, at least one bad", fc.recommend_argv(), _recommend, 150),
        ("suite YAML documents (`load_suite`)", fc.suite_documents(), fc.check_suite, 1500),
        ("suite YAML documents refused, `run` end to end", fc.suite_documents(), _suite_e2e, 40),
        ("hostile YAML override values (aliases, repeated keys, depth, digits, 1e-4)", fc.hostile_yaml(),
         fc.check_override_value, 400),
        ("suite files with a hostile YAML value or a repeated key", fc.hostile_suites(), fc.check_suite, 300),
        ("`recommend` --gpus/--deploy values and `report --estimate-budget`, refused before tracing",
         fc.serving_argv(), fc.refused_at_once, 100),
        ("`estimate` override values (hostile YAML, read as `run` reads them)", fc.hostile_yaml(),
         fc.check_estimate_override, 400),
        ("`ray_address` values (nothing or no Ray head there)", fc.ray_addresses(), fc.check_ray_address, 150),
        ("damaged run records (table, evidence, resume)", fc.damaged_records(), fc.check_damaged_records, 300),
        ("unusable caches x cache operations", st.tuples(st.sampled_from(fc.CACHE_STATES),
                                                          st.sampled_from(fc.CACHE_OPS)), fc.check_cache_state, 40),
        ("`recommend --data` files", fc.data_files(), fc.check_data_file, 100),
    ]


def count(strategy: Any, prop: Callable[[Any], str | None], examples: int) -> tuple[Counter, list[str], float]:
    from hypothesis import HealthCheck, Phase, given, seed, settings

    outcomes: Counter = Counter()
    failures: list[str] = []

    @seed(SEED)
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(case: Any) -> None:
        try:
            outcome = prop(case)
        except Exception as exc:  # noqa: BLE001 - a failure is what is counted here, whatever it is
            outcomes["failed"] += 1
            failures.append(f"{type(exc).__name__}: {str(exc)[:300]} <- {case!r}"[:600])
            return
        if outcome is not None:
            outcomes[outcome] += 1

    start = time.perf_counter()
    run()
    return outcomes, failures, time.perf_counter() - start


def main() -> int:
    import warnings

    import hypothesis

    import peftbench

    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every case count")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "fuzz_counts.md")
    args = parser.parse_args()
    rows, all_failures, total = [], [], (0, 0)
    for name, strategy, prop, examples in cases():
        outcomes, failures, seconds = count(strategy, prop, max(1, int(examples * args.scale)))
        tried = sum(outcomes.values())
        held = outcomes["refused"] + outcomes["accepted"]
        total = (total[0] + tried, total[1] + held)
        rows.append(f"| {name} | {tried} | {held} | {outcomes['refused']} | {outcomes['accepted']} | "
                    f"{outcomes['failed']} | {seconds:.0f} |")
        all_failures += [f"- {name}: {f}" for f in failures[:10]]
        print(rows[-1], flush=True)
    text = "\n".join([
        "# Input fuzz counts",
        "",
        "Generated by `python benchmarks/fuzz_counts.py` (the strategies of `tests/test_fuzz_inputs.py`, "
        f"hypothesis {hypothesis.__version__}, seed {SEED}, no shrinking). A case *held* when it was refused "
        "with exit code 2, exactly one line on stderr and nothing written, or accepted as valid (a plan or "
        "suite whose every value passes validation; an `estimate` answered from a shipped shape fit). "
        "Nothing is trained: `run` cases stop at the plan, and end-to-end `run` calls always carry a bad value.",
        "",
        "Damaged state is read, not typed: for damaged run records *refused* means the damaged records were "
        "skipped and said in one line per file, *accepted* that every record was read, and either way the "
        "`results` table, the recommender's evidence and resume's view were built; for unusable caches "
        "*accepted* means the operation answered with at most one warning line; for `recommend --data` files "
        "*refused* is a one-line error naming the file, *accepted* a profile (CSV cells like NA counted as labels).",
        "",
        "| input | cases tried | held | refused (exit 2, one line) | accepted as valid | failed | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        f"| **all** | **{total[0]}** | **{total[1]}** | | | **{total[0] - total[1]}** | |",
        "",
        f"peftbench {getattr(peftbench, '__version__', '?')}, python {sys.version.split()[0]}.",
        *(["", "Failures:", *all_failures] if all_failures else []),
        "",
    ])
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0 if total[0] == total[1] else 1


if __name__ == "__main__":
    raise SystemExit(main())
