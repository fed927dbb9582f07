"""What the reference results cover: read from the records, and what results/README.md says they cover."""

from __future__ import annotations

import json
from pathlib import Path

from peftbench.coverage import coverage, markdown

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["adapter", "bitfit", "dora", "full", "ia3", "lora", "prompt_tuning", "qlora", "vera"]


def _record(method: str, seed: int, role: str, status: str = "ok", task: str = "constitution_part",
            error: str | None = None) -> dict:
    return {"run_id": f"{task}-{method}-{seed}-{role}", "status": status, "suite": "legal", "task": task,
            "method": method, "seed": seed, "role": role, "wall_seconds": 90.0, "error": error,
            "metrics": {"accuracy": 40.0 + seed + len(method)} if status == "ok" else {},
            "hyperparameters": {"learning_rate": 1e-3}, "train_config": {"learning_rate": 1e-3},
            "eval_examples": 100, "tune": {"grid": [0.33, 1, 3]}}


def _write(root: Path, records: list[dict]) -> None:
    (root / "legal").mkdir(parents=True)
    (root / "legal" / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_a_task_is_complete_only_with_every_method_tuned_and_the_default_set_on_three_seeds(tmp_path):
    default = ["full", "lora", "ia3", "adapter", "prompt_tuning"]  # the legal suite's set, bitfit skipped
    records = [_record(m, s, "selected") for m in default for s in (0, 1, 2)]
    records += [_record(m, 0, "sweep") for m in default]
    records += [_record("bitfit", 0, "sweep", "skipped", error="no biases"),
                _record("qlora", 0, "sweep", "skipped", error="needs CUDA"),
                _record("vera", 0, "selected")]
    _write(tmp_path, records)
    row = next(r for r in coverage(tmp_path, METHODS) if r.task == "constitution_part")
    assert row.default_complete and not row.complete and row.missing == ("dora",)  # DoRA never ran
    assert row.not_run == {"bitfit": "no biases", "qlora": "needs CUDA"}
    assert row.tuned == ("adapter", "full", "ia3", "lora", "prompt_tuning", "vera")
    assert row.sweep_runs == 5 and abs(row.cpu_hours - 23 * 90 / 3600) < 1e-9
    _write(tmp_path / "with_dora", records + [_record("dora", 0, "selected")])
    assert next(r for r in coverage(tmp_path / "with_dora", METHODS) if r.task == "constitution_part").complete


def test_one_seed_short_is_not_a_complete_default_set(tmp_path):
    records = [_record(m, s, "selected") for m in ["full", "lora", "ia3", "adapter", "prompt_tuning", "bitfit"]
               for s in (0, 1, 2) if not (m == "ia3" and s == 2)]
    _write(tmp_path, records)
    rows = coverage(tmp_path, METHODS)
    row = next(r for r in rows if r.task == "constitution_part")
    assert not row.default_complete and row.default_seeds["ia3"] == (0, 1)
    assert "missing ia3" in markdown(rows)
    assert all(r.tuned == () for r in rows if r.task != "constitution_part")


def test_results_readme_shows_the_shipped_results_coverage():
    # results/README.md is written from the records (`python -m peftbench.coverage --update results/README.md`):
    # it must say what they hold.
    table = markdown(coverage())
    rerun = "rerun: python -m peftbench.coverage --update results/README.md"
    assert table in (ROOT / "results" / "README.md").read_text(), rerun


def test_every_suite_has_a_task_with_twelve_tuned_methods():
    rows = coverage()
    for suite in {r.suite for r in rows}:
        assert max(len(r.tuned) for r in rows if r.suite == suite) >= 12, suite
