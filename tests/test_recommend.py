"""Behaviour of `peftbench recommend`. Records here are synthetic test fixtures (not evidence): they give
the quality model a known shape so the checks do not depend on which suites have finished running."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from peftbench.recommend.engine import recommend
from peftbench.recommend.evaluate import evaluate, size_rule_rank
from peftbench.recommend.fitting import method_catalogue

# (task, kind, model, architecture, total params, train examples) of the fixture tasks.
TASKS = [*((f"cls_{c}", "classification", "minilm", "encoder", 22_713_216, 480) for c in "abcdef"),
         ("gen_a", "generation", "smollm2-135m", "decoder", 134_515_008, 200),
         ("mc_a", "multiple_choice", "smollm2-135m", "decoder", 134_515_008, 300)]
# method -> (family, relative score, seed wobble, trainable params)
METHODS = {"full": ("full", 1.0, 0.01, 0), "lora": ("reparameterization", 0.97, 0.01, 70_000),
           "ia3": ("adapter", 0.9, 0.01, 20_000), "bitfit": ("selective", 0.93, 0.01, 30_000),
           "prompt_tuning": ("soft_prompt", 0.7, 0.25, 8_000)}


def _records() -> list[dict]:
    out = []
    for task, kind, model, arch, total, n in TASKS:
        metric = "rougeL" if kind == "generation" else "accuracy"
        for method, (family, rel, wobble, trainable) in METHODS.items():
            if method == "bitfit" and arch == "decoder":
                continue
            for seed in (0, 1, 2):
                score = 60.0 * rel * (1 + wobble * (seed - 1))
                out.append({"run_id": f"{task}-{method}-{seed}", "suite": "fixture", "task": task, "task_kind": kind,
                            "model": model, "architecture": arch, "method": method, "family": family, "seed": seed,
                            "status": "ok", "metrics": {metric: score}, "hyperparameters": {"r": 8} if "lora" in
                            method else {}, "trainable_params": trainable or total, "total_params": total,
                            "train_examples": n, "mean_input_tokens": 60.0, "mean_target_tokens": 10.0,
                            "steps": 60})
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    (root / "fixture").mkdir()
    (root / "fixture" / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records()))
    return root


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "peftbench", "recommend", *args], capture_output=True, text=True,
                          timeout=600)


def test_json_has_the_issue_fields(results):
    proc = _cli("--task", "classification", "--gpu", "16GB", "--model", "minilm", "--train-examples", "480", "--json",
                "--results", str(results))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ranking"]
    listed = [c["method"] for c in out["ranking"] + out["not_ranked"]]
    assert sorted(listed) == sorted(method_catalogue())  # every registry method: ranked or listed with why not
    assert all(c["excluded_because"] for c in out["not_ranked"])
    assert all("train.gradient_accumulation_steps=" in c["override"] for c in out["ranking"])
    for item in out["ranking"]:
        for key in ("method", "hyperparameters", "predicted_relative_quality", "quality_interval", "peak_bytes",
                    "fits", "step_seconds", "adapter_bytes", "reasons", "evidence"):
            assert key in item
        assert item["quality_interval"][0] <= item["predicted_relative_quality"] <= item["quality_interval"][1]
    assert out["ranking"][0]["reasons"] and out["ranking"][0]["evidence"]


def test_nothing_recommended_exceeds_the_gpu_at_the_edge_of_the_card():
    """An 8B model on the most conservative 24 GB card (an A10G: its memory less 0.5 GiB of CUDA context) at 256
    tokens, on the default evidence (a shipped-cache query: no tracing): some methods fit, at most of the card,
    others do not. Every ranked candidate's peak plus the card's CUDA context is within the card's memory."""
    from peftbench.hardware import gpu_profiles

    rec = recommend("classification", gpu="24GB", model="llama-3.1-8b", train_examples=5000, seq_len=256)
    card = gpu_profiles()["a10g"]
    assert rec.gpu.startswith("24GB (NVIDIA A10G")
    budget = card.memory_bytes - card.cuda_context_bytes
    assert rec.ranking and all(c.fits and c.peak_bytes <= budget for c in rec.ranking)
    assert max(c.peak_bytes for c in rec.ranking) > 0.75 * budget  # at the edge, not a small fraction of it
    too_big = [c for c in rec.not_fitting if c.status == "does not fit" and c.peak_bytes > budget]
    assert too_big and "full" in {c.method for c in too_big}


def test_nothing_recommended_exceeds_the_gpu(results):
    rec = recommend("classification", gpu="16GB", model="minilm", train_examples=480, results=results)
    assert all(c.fits and c.peak_bytes <= 16 * 2**30 for c in rec.ranking)


@pytest.mark.slow  # traces every registry method on an 8B model when the cache is cold (minutes on a CPU)
def test_small_gpu_big_model_needs_checkpointing_or_quantisation(results):
    rec = recommend("summarization", gpu="8GB", model="llama-3.1-8b", seq_len=256, results=results).to_dict()
    for item in rec["ranking"]:
        assert item["method"] != "full"
        assert item["batch_size"] * item["gradient_accumulation"] == 16  # the effective batch is kept
        assert item["peak_bytes"] <= 8 * 2**30
        if item["method"] in ("lora", "dora", "rslora"):  # 16-bit LoRA only with checkpointing
            assert item["gradient_checkpointing"]
    assert "full" in {c["method"] for c in rec["not_ranked"]}


def test_readme_first_query_picks_a_model_and_quotes_the_true_smallest_peak():
    """`recommend --gpu 16GB --task summarization` (shipped cache): an 8B model fits only as QLoRA, and what
    would fit the rest quotes their smallest peak (micro-batch 1, checkpointing), not the user's batch's."""
    rec = recommend("summarization", gpu="16GB")
    assert rec.model == "llama-3.1-8b" and rec.ranking[0].method == "qlora" and rec.ranking[0].may_lead
    lora = next(c for c in rec.not_ranked if c.method == "lora")
    assert lora.status == "does not fit" and lora.batch_size == 1 and lora.gradient_checkpointing
    weights = 8.03e9 * 2  # bf16
    assert weights < lora.peak_bytes < 1.25 * weights  # the batch-16 peak quoted before was twice the weights
    assert any("micro-batch 1, gradient checkpointing" in r for r in lora.would_fit_with)


def test_the_headline_question_answers_from_the_shipped_caches_alone(monkeypatch, tmp_path):
    """A fresh install answers the headline question in about a second because every answer it needs ships: the
    corpus's points, sweeps and forgetting gaps, and the memory estimates. Validating the corpus (seconds) or
    tracing (minutes) on this path means a shipped cache went stale: rebuild with
    `python benchmarks/recommender_track_record.py --ship`."""
    from peftbench.recommend import corpus, feasibility

    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(corpus, "load_corpus", lambda *a, **k: pytest.fail("read the corpus: a shipped cache is stale"))
    monkeypatch.setattr(feasibility.CostModel, "_compute",
                        lambda *a, **k: pytest.fail("traced: a shipped estimate is stale"))
    assert recommend("summarization", gpu="16GB").ranking[0].method == "qlora"


def test_one_source_in_the_regime_gives_a_labelled_provisional_answer_not_none(cli):
    """A 1B decoder with 300 examples (shipped cache): only the GPT-2 tables of one repository are near it.
    The answer ranks methods, led by one with >= 5 comparisons there, and says the first place is provisional."""
    rec = recommend("generation", gpu="48GB", model="llama-3.2-1b", train_examples=300)
    top = rec.ranking[0]
    assert not top.may_lead and top.may_lead_provisionally and top.near_comparisons >= 5
    assert any(w.startswith("provisional first place") for w in top.warnings)
    code, out, _ = cli("recommend", "--gpu", "48GB", "--model", "llama-3.2-1b", "--task", "generation",
                       "--train-examples", "300")
    assert code == 0 and f"1. {top.method} (provisional: one source's evidence)" in out


def test_big_gpu_small_model_can_suggest_full(results):
    rec = recommend("classification", gpu="80GB", model="minilm", train_examples=480, results=results)
    assert "full" in [c.method for c in rec.ranking]
    assert rec.ranking[0].method == "full"  # the fixture evidence puts full fine-tuning first


def test_small_task_warns_about_methods_unstable_on_small_data(results):
    rec = recommend("classification", gpu="80GB", model="minilm", train_examples=200, top=10, results=results)
    prompt = next(c for c in rec.ranking + rec.not_ranked if c.method == "prompt_tuning")
    assert any("unstable on small data" in w for w in prompt.warnings)
    lora = next(c for c in rec.ranking + rec.not_ranked if c.method == "lora")
    assert not any("unstable" in w for w in lora.warnings)


@pytest.mark.parametrize("args", [
    ["--task", "poetry", "--gpu", "16GB"], ["--task", "classification", "--gpu", "banana"],
    ["--task", "classification", "--gpu", "16GB", "--data", "/nonexistent.csv"],
    ["--gpu", "16GB"], ["--task", "nosuite/nothing", "--gpu", "16GB"]])
def test_bad_input_exits_2_with_one_line(args, results):
    proc = _cli(*args, "--results", str(results))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_leave_one_task_out_reports_both_baselines(results):
    report = evaluate(results=results)["leave_one_task_out"]
    names = {s["strategy"] for s in report["summary"]}
    assert {"recommender", "always LoRA r=16", "rank by data size (LoRA)", "full FT whenever it fits"} <= names
    assert report["tasks"] == len(TASKS)
    tasks = report["per_task"]  # task by task, the mean's parts: a task that moved the mean can be named
    assert len(tasks) == report["tasks"] and all(t["methods"] >= 2 for t in tasks)
    rec = next(s for s in report["summary"] if s["strategy"] == "recommender")
    weighted = sum(t["regret"] * t["comparisons"] for t in tasks) / sum(t["comparisons"] for t in tasks)
    assert abs(weighted - rec["mean_regret"]) < 0.011
    assert size_rule_rank(500) == 8 and size_rule_rank(5_000) == 16 and size_rule_rank(500_000) == 64


def test_profiling_user_data_counts_bpe_tokens_when_the_models_tokenizer_is_not_on_disk(tmp_path):
    """Memory grows with tokens per example: a preset whose tokenizer is not here is profiled with the packaged
    SmolLM2 tokenizer (said in the notes), not with whitespace words, which undercount BPE tokens."""
    from peftbench.recommend.query import resolve_task

    text = "The plaintiff alleges breach of contract; the defendant denies liability and seeks dismissal. "
    data = tmp_path / "claims.csv"
    data.write_text("text,label\n" + "".join(f'"{text * 3}claim {i}",{"ab"[i % 2]}\n' for i in range(40)))
    words = len((text * 3).split()) + 2
    proxy = resolve_task("classification", [], data, "qwen2.5-1.5b")
    own = resolve_task("classification", [], data, "smollm2-135m")
    assert proxy.train_examples == 40 and proxy.num_labels == 2
    assert any("smollm2-135m's tokenizer, a proxy" in n for n in proxy.notes)
    assert not any("proxy" in n or "whitespace" in n for n in own.notes)
    assert proxy.mean_input_tokens == own.mean_input_tokens > words


def test_the_shipped_proxy_tokenizer_is_the_packaged_models_own():
    """The proxy is shipped as a tokenizer.json read without transformers (seconds saved on every cold
    `--data`): it must count exactly as the packaged SmolLM2's tokenizer, as transformers reads it from the GGUF."""
    from peftbench.models.loading import tokenizer_for
    from peftbench.models.proxy_tokenizer import proxy_tokenizer

    texts = ["The plaintiff alleges breach of contract.", "  spaced\tand\nnew lines  ", "naïve café — 東京 🚀",
             "def f(x):\n    return x ** 2  # code", "<|im_start|>user\nhi<|im_end|>", ""]
    own = tokenizer_for("smollm2-135m")
    for special in (False, True):
        assert proxy_tokenizer()(texts, add_special_tokens=special)["input_ids"] == \
            own(texts, add_special_tokens=special)["input_ids"]


def test_methods_ranked_past_top_keep_their_places_and_predictions():
    """--top N lists the rest in rank order with their predictions, not as a bare 'ranked' label."""
    from peftbench.cli.recommend import render

    full = recommend("classification", gpu="24GB", model="llama-3.1-8b", train_examples=5000, seq_len=256, top=50)
    top = recommend("classification", gpu="24GB", model="llama-3.1-8b", train_examples=5000, seq_len=256, top=2)
    order = [c.method for c in full.ranking]
    assert len(order) > 3 and [c.method for c in top.ranking] == order[:2]
    text = render(top.to_dict())
    below = text.split("Below the top 2:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [line.split(":")[0].strip() for line in below] == [f"{i}. {m}" for i, m in enumerate(order[2:], 3)]
    assert all(" of full FT, risk score " in line for line in below)
