"""Everyday answers read as a practitioner reads them: the pick with what it costs and what the alternative would
give, a run line that runs as printed, and the warnings a real setting needs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from peftbench.recommend.engine import recommend

LORA_FAMILY = ("lora", "qlora", "dora", "rslora")


@pytest.fixture(scope="module")
def answer_8b_24gb():
    return recommend("summarization", gpu="24GB", model="llama-3.1-8b", train_examples=5000, seq_len=512).to_dict()


def test_the_pick_says_what_it_costs_and_why(answer_8b_24gb):
    rec = answer_8b_24gb
    decision = rec["decision"]
    first = rec["ranking"][0]
    assert decision["pick"] == first["method"] and decision["tuning_runs"] == 1
    assert decision["summary"] == first["reasons"][0]
    assert "GPU-h" in decision["summary"]
    assert all(c["gpu_hours"] and c["gpu_hours"] > 0 for c in rec["ranking"])
    assert any(r.startswith("learning rate:") for r in first["reasons"])


def test_without_a_data_size_methods_are_costed_per_optimizer_step_of_the_same_effective_batch():
    """GPU-h per 1,000 steps counts optimizer steps of the effective batch, as the table's step column does: the
    methods fit different micro-batches (QLoRA 1 x 16, LoRA 4 x 4 on a 24 GB card), so 1,000 micro-steps would
    cost QLoRA a quarter of LoRA's work."""
    rec = recommend("summarization", gpu="24GB", model="llama-3.1-8b").to_dict()
    assert rec["decision"]["cost_unit"] == "GPU-h per 1,000 steps"
    accumulations = set()
    for c in rec["ranking"]:
        optimizer_step = c["step_seconds"] * c["gradient_accumulation"]
        assert c["gpu_hours"] == pytest.approx(optimizer_step * 1000 * c["gpus"] / 3600, rel=1e-3), c["method"]
        accumulations.add(c["gradient_accumulation"])
    assert len(accumulations) > 1  # the case that matters: methods at different micro-batches


def test_the_run_line_runs_as_printed_on_the_card(answer_8b_24gb):
    line = answer_8b_24gb["ranking"][0]["override"]
    assert line.startswith("peftbench run suite=YOUR_SUITE model=meta-llama/Llama-3.1-8B device=cuda methods=[")
    assert "train.dtype=bf16" in line  # an A10G computes in bf16
    assert any("YOUR_SUITE is a suite with your data" in w for w in answer_8b_24gb["ranking"][0]["warnings"])


def test_a_card_without_bf16_trains_in_fp16_and_says_so():
    rec = recommend("summarization", gpu="16GB", model="llama-3.1-8b", train_examples=5000, seq_len=512).to_dict()
    first = rec["ranking"][0]
    assert "train.dtype=fp16" in first["override"] and "train.dtype=bf16" not in first["override"]
    assert any("no bf16" in w for w in first["warnings"])


def test_a_benchmarked_task_gets_its_own_suite_in_the_run_line():
    rec = recommend("legal/constitution_part", gpu="24GB", model="minilm").to_dict()
    line = rec["ranking"][0]["override"]
    assert "suite=legal tasks=[constitution_part] model=minilm device=cuda" in line and "YOUR_SUITE" not in line


def test_little_data_and_an_edge_device_are_questioned():
    small = recommend("multiple-choice", gpu="24GB", model="llama-3.1-8b", train_examples=200).to_dict()
    assert any("200 training examples is little" in n for n in small["notes"])
    edge = recommend("summarization", gpu="24GB", model="llama-3.1-8b", train_examples=5000,
                     deploy="edge").to_dict()
    assert any(n.startswith("--deploy edge with a 8.") for n in edge["notes"])


def test_evidence_lines_say_why_they_are_near(answer_8b_24gb):
    lines = [e for c in answer_8b_24gb["ranking"] for e in c["evidence"]]
    assert lines and all("params" in e.split(")")[0] for e in lines)
    assert any("weighted x" in e or "same task kind" in e for e in lines)


@pytest.mark.parametrize("query", [
    dict(task="summarization", gpu="24GB", model="llama-3.1-8b", train_examples=5000),
    dict(task="classification", gpu="8GB", model="qwen2.5-1.5b", train_examples=2000),
    dict(task="generation", gpu="80GB", model="qwen2.5-7b", train_examples=50_000),
])
def test_everyday_questions_give_an_llm_scale_lora_family_rate(query):
    """A LoRA-family rate of at most 1e-3 at LLM scale, one rate for LoRA, DoRA and QLoRA (the same update
    parametrization, so the same evidence), and a pick."""
    rec = recommend(query.pop("task"), **query).to_dict()
    assert rec["ranking"]
    rates = {c["method"]: c["hyperparameters"]["learning_rate"] for c in rec["ranking"] + rec["not_ranked"]
             if c["method"] in LORA_FAMILY}
    assert rates and all(r <= 1e-3 for r in rates.values())
    assert len({rates[m] for m in ("lora", "dora", "qlora") if m in rates}) == 1


@pytest.mark.parametrize("flags", [["--tuning-runs", "0"], ["--tuning-runs", "-2"], ["--value-margin", "nan"],
                                   ["--value-margin", "-1"], ["--value-margin", "101"]])
def test_bad_budget_flags_are_refused_in_one_line(flags):
    proc = subprocess.run([sys.executable, "-m", "peftbench", "recommend", "--task", "summarization", "--gpu", "24GB",
                           *flags], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_forgetting_is_quoted_as_a_cost_of_full_fine_tuning_from_instruction_tuning_tables():
    """Full fine-tuning's answer says how much more general ability it gave up than LoRA where a source measured
    both after fine-tuning on examples (Biderman et al. 2024's instruction-tuning tables; their continued
    pre-training tables, billions of tokens, are another regime); QLoRA quotes LoRA's measurement."""
    import statistics

    from peftbench.recommend.corpus import load_corpus
    from peftbench.recommend.forgetting_evidence import FORGETTING_METRIC, forgetting_gaps

    rows = [r for r in load_corpus() if r.metric == FORGETTING_METRIC]
    examples = [r for r in rows if r.train_examples]
    assert examples and len(examples) < len(rows)  # both regimes are in the corpus; only one is used
    full = {(r.locator, r.training_length): r.score for r in examples if r.method == "full"}
    paired = [100 * (r.score - full[(r.locator, r.training_length)]) for r in examples if r.method == "lora"]
    gap = forgetting_gaps(load_corpus())["lora"]
    assert gap.settings == len(paired) and gap.mean_points == round(statistics.mean(paired), 2) > 0
    assert {"Table S6", "Table S8", "Table S13"} == set(gap.locators)

    rec = recommend("generation", gpu="48GB", model="llama-3.2-3b", train_examples=20000).to_dict()
    by_method = {c["method"]: c for c in rec["ranking"]}
    [line] = [r for r in by_method["full"]["reasons"] if r.startswith("forgetting:")]
    assert f"kept {gap.mean_points:.1f} points less" in line and "Table S8" in line and "Biderman" in line
    assert any(r.startswith("forgetting: qlora kept") and "lora's measurement" in r
               for r in by_method["qlora"]["reasons"])
    assert not any(r.startswith("forgetting:") for r in by_method["ia3"]["reasons"])  # nothing measured it
