"""Predicted vs measured peak memory for every committed harness run (no training: reads `results/`).

Every run records the estimator's prediction beside its measurement (CPU: the process's RSS growth from
before the weights load to the training peak). This prints, per suite and task, the median and worst
error, and writes `benchmarks/estimator_in_harness.md`.

    python benchmarks/estimator_in_harness.py
"""

from __future__ import annotations

import statistics
from pathlib import Path

from peftbench.results import latest_records, reference_results_dir, suite_result_files

OUT = Path(__file__).with_name("estimator_in_harness.md")


def errors() -> dict[tuple[str, str], list[tuple[str, float]]]:
    """(suite, task) -> [(method, signed error %)] for ok runs with a prediction."""
    out: dict[tuple[str, str], list[tuple[str, float]]] = {}
    # a run re-measured elsewhere counts once, as in tables
    for rec in latest_records(suite_result_files(reference_results_dir())):
        memory, prediction = rec.memory, rec.prediction or {}
        predicted, peak = prediction.get("peak_bytes"), memory.get("peak_rss_train_bytes")
        base = memory.get("rss_before_load_bytes")
        if not rec.ok or not (predicted and peak and base) or peak <= base:
            continue
        error = 100 * (predicted / (peak - base) - 1)
        out.setdefault((rec.suite, rec.task), []).append((rec.method, error))
    return out


def render(table: dict[tuple[str, str], list[tuple[str, float]]]) -> str:
    lines = ["# Estimator in the harness: predicted vs measured peak, every committed run", "",
             "Produced by `python benchmarks/estimator_in_harness.py` from `results/*/runs.jsonl`. Measured: peak "
             "RSS during loading and training minus RSS before the weights load (CPU, one thread, two runs "
             "sharing the machine). Predicted: the estimator's answer for the run's model, method, batch size, "
             "longest padded batch and dtype, recorded before the run started. Error = predicted / measured − 1.",
             "", "| suite | task | runs | median abs. error | worst error | worst method |",
             "|---|---|---|---|---|---|"]
    everything = []
    for (suite, task), rows in sorted(table.items()):
        worst = max(rows, key=lambda r: abs(r[1]))
        everything += [e for _, e in rows]
        lines.append(f"| {suite} | {task} | {len(rows)} | {statistics.median(abs(e) for _, e in rows):.1f}% | "
                     f"{worst[1]:+.1f}% | {worst[0]} |")
    if everything:
        lines += ["", f"All {len(everything)} runs: median absolute error "
                  f"{statistics.median(abs(e) for e in everything):.1f}%, "
                  f"{sum(abs(e) <= 10 for e in everything) / len(everything):.0%} within 10%, worst "
                  f"{max(everything, key=abs):+.1f}%.",
                  "", "Where it misses: MiniLM classification with short, variable-length batches (64-token "
                  "rt_sentiment and drug-review tasks) is under-predicted by a roughly constant 30-45 MB for every "
                  "PEFT method (15-22% of a ~200 MB peak), while "
                  "full fine-tuning (whose peak is the optimizer step, not activations) is within 2%. Probable cause, "
                  "not yet verified: the trace models one batch of the longest length, while a real run allocates "
                  "and frees batches of every length and the heap keeps the holes, an overhead the 24 MB "
                  "calibration (made with uniform batches) does not cover."]
    return "\n".join(lines) + "\n"


def main() -> None:
    OUT.write_text(render(errors()))
    print(OUT.read_text())


if __name__ == "__main__":
    main()
