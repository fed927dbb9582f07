"""Which tasks can tell methods apart: smallest detectable difference, chance and majority baselines."""

from __future__ import annotations

import math

import pytest

from peftbench.informativeness import task_informativeness as _informativeness
from peftbench.record import RunRecord


def task_informativeness(dicts: list[dict], *args):
    return _informativeness(_typed(dicts), *args)


def _typed(dicts: list[dict]) -> list[RunRecord]:
    """Records as the store reads them, from test dicts (a run id, suite and status where a test leaves them out)."""
    return [RunRecord.from_dict({"run_id": f"run{i}", "suite": "s", "status": "ok", **d}) for i, d in enumerate(dicts)]


def _records(task: str, scores: dict[str, list[float]], n: int, metric: str = "accuracy", **extra) -> list[dict]:
    return [{"task": task, "suite": "s", "task_kind": "classification", "method": method, "seed": seed,
             "status": "ok", "metrics": {metric: value}, "eval_examples": n, "hyperparameters": {},
             "train_config": {}, **extra}
            for method, values in scores.items() for seed, value in enumerate(values)]


def test_small_eval_set_near_chance_is_not_informative():
    # mmlu_law-like: 32 four-way questions, every method 15-26%.
    records = _records("law", {"lora": [21.9, 21.9, 21.9], "ia3": [15.6, 18.8, 21.9], "full": [25.0, 28.1, 25.0]},
                       32, eval_baselines={"chance": 25.0, "majority": 34.4})
    info = task_informativeness(records)["law"]
    p = (21.9 + 18.8 + 26.0) / 300
    assert info.eval_noise == pytest.approx(100 * math.sqrt(p * (1 - p) / 32), abs=0.1)
    assert info.detectable_difference > 15 and not info.separates and not info.informative
    assert info.above_chance is False and "no method separates" in info.reason


def test_large_eval_set_with_a_clear_gap_is_informative_and_ties_are_named():
    records = _records("topic", {"full": [94, 93, 95], "lora": [92, 93, 92], "prompt_tuning": [40, 45, 42]}, 400,
                       eval_baselines={"chance": 20.0, "majority": 23.0})
    info = task_informativeness(records)["topic"]
    assert info.informative and info.separates and info.above_chance and info.above_majority
    assert info.best_method == "full" and info.detectable_difference < 10
    assert info.tied_with_best({"full": 94, "lora": 92.3, "prompt_tuning": 42}) == ["full", "lora"]


def test_scores_at_the_majority_class_are_not_informative():
    records = _records("sent", {"a": [80, 80.5, 81], "b": [64.8] * 3, "c": [64.8] * 3}, 2000,
                       eval_baselines={"chance": 33.3, "majority": 80.0})
    info = task_informativeness(records)["sent"]
    assert info.separates and info.above_majority is False and not info.informative


def test_generation_uses_the_seed_spread_and_one_seed_is_not_judged():
    spread = _records("gen", {"a": [30, 31, 29], "b": [20, 21, 19]}, 16, metric="rougeL")
    info = task_informativeness(spread)["gen"]
    assert info.eval_noise is None and info.seed_noise == pytest.approx(1.0) and info.informative
    single = task_informativeness(_records("gen", {"a": [30], "b": [20]}, 16, metric="rougeL"))["gen"]
    assert single.detectable_difference is None and single.informative and "not judged" in single.reason


def test_sweep_and_failed_runs_are_ignored_and_suites_kept_apart():
    records = _records("t", {"a": [90, 91], "b": [50, 52]}, 500)
    records += [{**records[0], "role": "sweep", "metrics": {"accuracy": 0.0}}, {**records[0], "status": "failed"}]
    records += [{**r, "suite": "other"} for r in _records("t", {"a": [50, 50]}, 500)]
    infos = task_informativeness(records)
    assert set(infos) == {"s/t", "other/t"} and infos["s/t"].best == 90.5


def test_report_names_no_best_method_on_a_task_that_cannot_separate():
    from peftbench.report import tables, verdict

    def entry(task: str, means: dict[str, float]) -> dict:
        summary = {m: {"quality": q, "peak_memory_bytes": 1e8} for m, q in means.items()}
        return {"table": tables.TaskTable(task, "classification", "m", "accuracy", [], [], summary), "anchor": task}

    law = _records("law", {"full": [26, 26, 26], "lora": [22, 22, 22]}, 32, eval_baselines={"chance": 25.0})
    topic = _records("topic", {"full": [94, 93, 95], "lora": [92, 93, 92], "ia3": [40, 45, 42]}, 400)
    informs = task_informativeness(law + topic)
    entries = [entry("law", {"full": 26, "lora": 22}), entry("topic", {"full": 94, "lora": 92.3, "ia3": 42.3})]
    rows = {e["table"].task: verdict.measured_summary(e, informs.get(e["table"].task)) for e in entries}
    assert rows["law"]["best"] == "no method separates" and not rows["law"]["separates"]
    assert rows["topic"]["best"] == "full" and "lora" in rows["topic"]["note"]  # a lead inside the noise is a tie


def test_a_tuned_method_is_judged_by_its_selected_runs_not_its_plain_runs():
    """A plain run at an untuned rate (LoRA stuck at 40%) beside the tuned runs would widen the span and make
    the task seem to separate methods; every view (tables, reports, coverage, recommender) reads one verdict."""
    tuned = _records("topic", {"lora": [90.0, 91.0, 90.5], "full": [91.0, 90.0, 91.5]}, 200, role="selected")
    plain = _records("topic", {"lora": [40.0, 41.0, 40.5]}, 200)
    plain = [{**r, "hyperparameters": {"learning_rate": 1e-5}} for r in plain]
    alone = task_informativeness(tuned)["topic"]
    info = task_informativeness(tuned + plain)["topic"]
    assert not alone.separates and not info.separates and info.spread == alone.spread
    untuned_only = task_informativeness(plain + _records("topic", {"full": [91.0, 90.0, 91.5]}, 200))["topic"]
    assert untuned_only.separates  # where a method was not tuned, its plain runs are what there is


def test_report_ranks_a_tuned_method_by_its_tuned_runs_and_labels_both_readably(tmp_path):
    """LoRA's plain runs at its default rate happen to score highest, but LoRA was tuned on the task: the
    report's best method, its ties and "vs full FT" come from the tuned runs (the records every verdict uses),
    and the table shows both configurations with labels a reader understands ("tuned" / "untuned")."""
    import json

    from peftbench.report import tables, verdict
    from peftbench.results import load_table

    def runs(scores: dict[str, list[float]], lr: dict[str, float], role: str | None) -> list[dict]:
        out = _records("topic", scores, 400, role=role, family="x", model="m", data_fingerprint="d")
        for r in out:
            r["train_config"] = {"learning_rate": lr[r["method"]], "max_steps": 8}
            r["run_id"] = f"{r['method']}-{role}-{r['seed']}"
        return out

    tuned = runs({"full": [90.0, 91.0, 90.5], "lora": [80.0, 80.5, 81.0]}, {"full": 2e-4, "lora": 6e-3}, "selected")
    plain = runs({"lora": [95.0, 95.5, 94.5], "ia3": [60.0, 61.0, 60.5]}, {"lora": 2e-3, "ia3": 1e-2}, None)
    path = tmp_path / "runs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in tuned + plain))
    table = tables.task_table(load_table([path]), "topic", ("accuracy",))
    assert set(table.summary) == {"full", "ia3", "lora (lr=0.006, tuned)", "lora (lr=0.002, untuned)"}
    assert table.untuned_beside_tuned == {"lora (lr=0.002, untuned)"}
    assert table.best_by_method()["lora"]["quality"] == pytest.approx(80.5)
    row = verdict.measured_summary({"table": table, "anchor": "t"}, task_informativeness(tuned + plain)["topic"])
    assert row["best"] == "full" and row["separates"]
    assert row["relative"] == "100.0%"  # "vs full FT" still has full's tuned runs to divide by
    assert "untuned" not in row["note"]
