"""Generation and multiple choice on the real SmolLM2-135M decoder (packaged GGUF, converted once)."""

from __future__ import annotations

import pytest
from conftest import read_records


@pytest.fixture(scope="module")
def decoder_runs(tmp_path_factory):
    from peftbench.cli import main

    root = tmp_path_factory.mktemp("results")
    assert main(["run", "suite=smoke", "tasks=[constitution_title]", "methods=[lora,bitfit,qlora]",
                 "train.max_steps=2", "--no-progress", "--results", str(root)]) == 0
    assert main(["run", "suite=legal", "tasks=[mmlu_law]", "methods=[ia3]", "train.max_steps=2",
                 "--no-progress", "--results", str(root)]) == 0
    return read_records(root / "smoke" / "runs.jsonl") + read_records(root / "legal" / "runs.jsonl")


def test_generation_scores_rouge_bleu_chrf(decoder_runs):
    lora = next(r for r in decoder_runs if r["method"] == "lora")
    assert lora["status"] == "ok", lora.get("error")
    assert set(lora["metrics"]) == {"rouge1", "rouge2", "rougeL", "bleu", "chrf"}
    assert all(0 <= v <= 100 for v in lora["metrics"].values())
    assert lora["architecture"] == "decoder" and lora["mean_target_tokens"] > 1


def test_multiple_choice_accuracy(decoder_runs):
    ia3 = next(r for r in decoder_runs if r["task"] == "mmlu_law")
    assert ia3["status"] == "ok", ia3.get("error")
    assert set(ia3["metrics"]) == {"accuracy"} and 0 <= ia3["metrics"]["accuracy"] <= 100


def test_methods_that_cannot_run_here_are_skipped_not_faked(decoder_runs):
    by_method = {r["method"]: r for r in decoder_runs}
    assert by_method["bitfit"]["status"] == "skipped" and "no bias" in by_method["bitfit"]["error"]
    assert by_method["qlora"]["status"] == "skipped" and "CUDA" in by_method["qlora"]["error"]
    assert "metrics" not in by_method["qlora"]
