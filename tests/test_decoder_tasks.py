"""Generation and multiple choice on the real SmolLM2-135M decoder (packaged GGUF, converted once)."""

from __future__ import annotations

import pytest
from conftest import read_records

from peftbench.suites import suites_dir

# The shipped legal data, at test size: a few rows and short sequences keep each run under a minute.
SUITE = f"""
name: decoder-test
model: smollm2-135m
train: {{max_steps: 2, batch_size: 2, eval_batch_size: 4}}
tasks:
  - name: constitution_title
    kind: generation
    data: {{source: local, files: {{train: {suites_dir()}/data/constitution_title/train.jsonl,
                                    eval: {suites_dir()}/data/constitution_title/eval.jsonl}}}}
    fields: {{source: source, target: target}}
    prompt: "Article of the Constitution of India:\\n{{source}}\\nTitle:"
    sizes: {{train: 8, eval: 4}}
    max_length: 64
    max_target_length: 8
  - name: mmlu_law
    kind: multiple_choice
    data: {{source: local, files: {{train: {suites_dir()}/data/mmlu_law/train.jsonl,
                                    eval: {suites_dir()}/data/mmlu_law/eval.jsonl}}}}
    fields: {{question: question, choices: choices, answer: answer}}
    prompt: "Question: {{question}}\\nA. {{choices[0]}}\\nB. {{choices[1]}}\\n\\
      C. {{choices[2]}}\\nD. {{choices[3]}}\\nAnswer:"
    sizes: {{train: 8, eval: 8}}
    max_length: 96
"""


@pytest.fixture(scope="module")
def decoder_runs(tmp_path_factory):
    from peftbench.cli import main

    root = tmp_path_factory.mktemp("results")
    suite = root / "decoder-test.yaml"
    suite.write_text(SUITE)
    assert main(["run", f"suite={suite}", "tasks=[constitution_title]", "methods=[lora,bitfit,qlora]",
                 "--no-progress", "--results", str(root)]) == 0
    assert main(["run", f"suite={suite}", "tasks=[mmlu_law]", "methods=[ia3]", "--no-progress",
                 "--results", str(root)]) == 0
    return read_records(root / "decoder-test" / "runs.jsonl")


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
