"""Each domain suite runs end to end at smoke size: one task, LoRA, one step, a handful of rows."""

from __future__ import annotations

import json

import pytest

from peftbench.suites import load_suite

DOMAIN_SUITES = ["legal", "medical", "finance", "summarization", "translation", "classification"]


@pytest.mark.parametrize("suite", DOMAIN_SUITES)
def test_first_task_of_suite_runs_at_smoke_size(cli, tmp_path, suite):
    task = load_suite(suite).tasks[0]
    code, out, err = cli("run", f"suite={suite}", f"tasks=[{task.name}]", "methods=[lora]", "seeds=[0]",
                         "train.max_steps=1", "train.batch_size=2", "sizes.train=8", "sizes.eval=4",
                         "--no-progress", "--results", str(tmp_path))
    assert code == 0, err
    record = json.loads((tmp_path / suite / "runs.jsonl").read_text())
    assert record["status"] == "ok", record.get("error")
    assert record["train_examples"] == 8 and record["eval_examples"] == 4
    assert record["metrics"]


def test_suite_descriptors_are_computed_from_data(cli):
    code, out, err = cli("suites", "legal")
    assert code == 0, err
    for column in ("train_examples", "mean_input_tokens", "p90_input_tokens", "num_labels", "label_entropy"):
        assert column in out
    assert "constitution_part" in out and "mmlu_law" in out
