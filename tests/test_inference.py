"""Inference cost and forgetting per run, the inference estimate, and the deploy weighting."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import REPO, read_records

from peftbench.errors import UserError
from peftbench.suites import suites_dir

# --- serving facts -------------------------------------------------------------------------------------------


def test_serving_facts_say_which_methods_merge_and_why_not():
    from peftbench.serving import serving

    assert serving("lora").mergeable and serving("ia3").mergeable and serving("oft").mergeable
    assert not serving("prompt_tuning").mergeable and "virtual tokens" in serving("prompt_tuning").reason
    assert serving("prompt_tuning").extra_positions
    assert not serving("adapter").mergeable and "non-linearity" in serving("adapter").reason
    assert serving("full").in_place and not serving("full").separate_artifact and serving("bitfit").in_place


# --- measured inference (in-process, MiniLM: seconds) ----------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_lora():
    import dataclasses

    from peftbench.data import load_task_data
    from peftbench.methods import MethodContext, get_method
    from peftbench.models import load_for_task
    from peftbench.suites import load_suite
    from peftbench.tasks import TASK_KINDS

    task = dataclasses.replace(load_suite("smoke").task("rt_sentiment"), sizes={"train": 8, "eval": 4})
    kind = TASK_KINDS[task.kind]
    data = load_task_data(task)
    load = lambda: load_for_task(task.model, task.kind, kind.num_labels(task, data.train))  # noqa: E731
    loaded = load()
    prepared = kind.prepare(task, loaded.tokenizer, data.train, data.eval)
    method = get_method("lora")
    model = method.apply(loaded.model, method.hyperparameters(), MethodContext("encoder", "bert", task.kind))
    return model, loaded.tokenizer, task, prepared, lambda: load().model


def test_inference_measures_base_unmerged_and_merged_on_the_same_inputs(minilm_lora):
    from peftbench.inference import InferenceSettings, measure_inference

    model, tokenizer, task, prepared, load_base = minilm_lora
    cost = measure_inference(model, tokenizer, task, prepared, "lora", load_base=load_base,
                             settings=InferenceSettings(examples=3, rounds=1))
    record = cost.to_dict()
    assert record["unit"] == "example" and record["examples"] == 3 and record["mergeable"]
    assert record["clock"] == "cpu" and record["base"]["unit_ms"] > 0 and record["base"]["throughput"] > 0
    # Merging folds the adapter into the base weights: the same bytes as the base, fewer than unmerged.
    assert record["merged"]["weights_bytes"] == record["base"]["weights_bytes"] < record["unmerged"]["weights_bytes"]
    assert record["overhead_unmerged"] > 0 and record["overhead_served"] == record["overhead_merged"] > 0
    assert hasattr(model, "merge_and_unload") and any("lora_A" in n for n, _ in model.named_parameters())  # intact
    json.dumps(record)


def test_methods_that_cannot_merge_are_measured_unmerged_with_the_reason(minilm_lora):
    from peftbench.inference import InferenceSettings, measure_inference

    model, tokenizer, task, prepared, load_base = minilm_lora
    cost = measure_inference(model, tokenizer, task, prepared, "adapter", load_base=load_base,
                             settings=InferenceSettings(examples=2, rounds=1))
    assert cost.merged is None and not cost.mergeable and "non-linearity" in cost.merge_note
    assert cost.overhead_served == cost.overhead_unmerged


# --- forgetting -----------------------------------------------------------------------------------------------


def test_general_text_sample_is_shipped_with_its_card_and_fingerprint():
    import hashlib

    from peftbench.forgetting import sample_path

    fingerprints = json.loads((REPO / "suites" / "data" / "fingerprints.json").read_text())
    assert fingerprints["general_text/eval.jsonl"]["rows"] == 96
    assert hashlib.sha256(sample_path().read_bytes()).hexdigest() == fingerprints["general_text/eval.jsonl"]["sha256"]
    card = (REPO / "suites" / "DATA.md").read_text()
    assert "general_text" in card and "gensim" in card and "lee_background.cor" in card


def test_general_sequences_are_full_length_and_fixed(minilm_dir):
    from transformers import AutoTokenizer

    from peftbench.forgetting import ForgettingSettings, general_sequences

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    first, sample = general_sequences(tokenizer, ForgettingSettings(sequences=5, tokens=64))
    again, _ = general_sequences(tokenizer, ForgettingSettings(sequences=5, tokens=64))
    assert len(first) == 5 and all(len(s) == 64 for s in first) and first == again and len(sample) == 16


def test_forgetting_is_the_paired_change_in_loss():
    from peftbench.forgetting import applicable, summarise

    result = summarise([2.0, 3.0, 4.0], [2.1, 3.3, 4.0], 128, "abc", base_cached=True)
    assert result.delta_nats == pytest.approx(0.13333, abs=1e-4)
    assert result.perplexity_ratio == pytest.approx(2.718281828 ** 0.13333, rel=1e-3)
    assert 0 < result.delta_stderr < 0.2 and result.tuned_nats > result.base_nats
    assert applicable("encoder", "classification") and applicable("decoder", "classification")
    assert applicable("decoder", "generation") is None


# --- a real run: LoRA and prompt tuning on SmolLM2 (the check) ----------------------------------------

SUITE = f"""
name: inference-test
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
"""


@pytest.fixture(scope="module")
def smollm_runs(tmp_path_factory):
    from peftbench.cli import main

    root = tmp_path_factory.mktemp("results")
    suite = root / "inference-test.yaml"
    suite.write_text(SUITE)
    # conftest turns the measurements off by default (PEFTBENCH_POST_TRAINING=0): these runs ask for them
    assert main(["run", f"suite={suite}", "methods=[lora,prompt_tuning]", "measure_after_training=true",
                 "--no-progress", "--results", str(root)]) == 0
    return {r["method"]: r for r in read_records(root / "inference-test" / "runs.jsonl")}


def test_a_run_records_inference_with_and_without_merging_and_forgetting(smollm_runs):
    lora, prompt = smollm_runs["lora"], smollm_runs["prompt_tuning"]
    assert lora["status"] == "ok" and prompt["status"] == "ok", (lora.get("error"), prompt.get("error"))
    inf = lora["inference"]
    assert "error" not in inf, inf.get("error")
    assert inf["unit"] == "generated token" and inf["mergeable"]
    for variant in ("base", "unmerged", "merged"):
        figures = inf[variant]
        assert figures["latency_ms"] > 0 and figures["prefill_ms"] > 0 and figures["decode_ms_per_token"] > 0
    assert prompt["inference"]["merged"] is None and prompt["inference"]["extra_positions"] == 20
    # 20 virtual tokens lengthen every request; merged LoRA is the base architecture. Which of the two is
    # faster is a timing claim (benchmarks/, not here: a loaded machine reversed it once); the figures exist.
    for overhead in (prompt["inference"]["overhead_served"], lora["inference"]["overhead_merged"]):
        assert isinstance(overhead, float) and 0 < overhead < 100
    for record in (lora, prompt):
        forgetting = record["forgetting"]
        assert forgetting["measured"] and forgetting["sequences"] == 8 and forgetting["base_nats"] > 0
        assert abs(forgetting["delta_nats"]) < 1.0  # two steps barely move a 135M model
    assert lora["forgetting"]["base_nats"] == prompt["forgetting"]["base_nats"]  # one base, cached


def test_results_table_shows_inference_overhead_and_forgetting(smollm_runs):
    import pandas as pd

    from peftbench.cli.results import seed_summary

    records = list(smollm_runs.values())
    table = pd.json_normalize(records, sep=".")
    table["config"], table["config_id"] = table["method"], table["method"]
    summary = seed_summary(table)
    assert {"infer_x", "infer_x_merged", "forget_nats"} <= set(summary.columns)
    assert summary.loc[("constitution_title", "prompt_tuning"), "infer_x_merged"] == ""


def test_inference_pareto_plot():
    from peftbench.report.pareto import inference_panel

    summary = {"lora": {"quality": 30.0, "inference_overhead": 1.0, "inference_overhead_unmerged": 1.1},
               "prompt_tuning": {"quality": 25.0, "inference_overhead": 1.2}, "full": {"quality": 31.0}}
    svg = inference_panel(summary, "rougeL", "inf")
    assert svg.startswith("<svg") and "prompt_tuning" in svg and "full" not in svg
    assert inference_panel({"full": {"quality": 1.0}}, "rougeL", "x") is None


# --- predicted inference cost ---------------------------------------------------------------------------------


def test_estimate_inference_for_an_8b_preset_grows_the_kv_cache_with_context():
    from peftbench.estimate.inference import estimate_inference

    short = estimate_inference("llama-3.1-8b", "lora", context=1024, hardware=["a100-80gb"])
    long = estimate_inference("llama-3.1-8b", "lora", context=8192, batch=2, hardware=["a100-80gb"])
    assert short.kv_bytes_per_position == 2 * 32 * 8 * 128 * 2  # K and V x layers x kv heads x head dim x bf16
    assert short.kv_cache_bytes == short.kv_bytes_per_position * 1024
    assert long.kv_cache_bytes == short.kv_cache_bytes * 16
    assert short.weights_bytes["merged"] == short.base_params * 2 < short.weights_bytes["unmerged"]
    # LoRA r=8 on q_proj (4096 -> 4096) and v_proj (4096 -> 1024) of 32 layers
    assert short.adapted_layers == 64 and short.adapter_params == 32 * 8 * ((4096 + 4096) + (4096 + 1024))
    a100_short, a100_long = short.profiles["a100-80gb"], long.profiles["a100-80gb"]
    assert a100_long["merged"]["decode_ms_per_token"] > a100_short["merged"]["decode_ms_per_token"]
    assert a100_short["unmerged"]["decode_ms_per_token"] > a100_short["merged"]["decode_ms_per_token"]
    assert a100_short["merged"] == a100_short["base"] and a100_short["fits"]


def test_served_structures_are_shipped_for_the_presets_and_equal_a_fresh_build(monkeypatch, tmp_path):
    """`recommend --deploy` reads every candidate's structure: shipped for the presets (building each wrapped
    model on the meta device takes ~1 s), cached for any other model, and the same numbers either way."""
    from peftbench.estimate import inference

    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path))
    shipped = json.loads(inference.SHIPPED_STRUCTURES.read_text())
    for method in ("lora", "ia3", "prompt_tuning"):
        key = inference.structure_key("qwen2.5-0.5b", method, None, "bf16")
        assert key in shipped, "stale: python -m peftbench.estimate.ship_fits --structures"
        entry = shipped[key]
        shape, counts = inference.compute_structure("qwen2.5-0.5b", method, None, "bf16")
        assert entry["shape"] == dataclasses.asdict(shape) and entry["counts"] == counts
    # A model with no shipped structure is built once, then read back: the second call builds nothing.
    config = tmp_path / "tiny" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
                                  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                                  "vocab_size": 256}))
    first = inference.estimate_inference(str(config.parent), "lora", hardware=["a100-80gb"])
    monkeypatch.setattr(inference, "compute_structure", lambda *a: pytest.fail("built again"))
    again = inference.estimate_inference(str(config.parent), "lora", hardware=["a100-80gb"])
    assert again == first and first.adapted_layers == 4
    # What the structure means keys it: another rank is another structure, the learning rate is not.
    assert inference.structure_key(str(config.parent), "lora", {"r": 16}, "bf16") != \
        inference.structure_key(str(config.parent), "lora", None, "bf16")
    assert inference.structure_key(str(config.parent), "lora", {"learning_rate": 1e-3}, "bf16") == \
        inference.structure_key(str(config.parent), "lora", None, "bf16")


def test_estimate_inference_cli_json_and_soft_prompt_positions(cli):
    code, out, err = cli("estimate", "--model", "llama-3.1-8b", "--method", "prompt_tuning", "--inference",
                         "--context", "4096", "--hardware", "h100-80gb", "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["extra_positions"] == 20 and not answer["mergeable"]
    assert answer["kv_cache_bytes"] == answer["kv_bytes_per_position"] * (4096 + 20)
    assert answer["profiles"]["h100-80gb"]["prefill_overhead_served"] > 1.0
    code, _, err = cli("estimate", "--model", "llama-3.1-8b", "--method", "lora", "--inference", "--context", "0")
    assert code == 2 and "--context" in err


# --- deploy weighting -------------------------------------------------------------------------------------------

CANDIDATES = [
    {"method": "prompt_tuning", "quality": 0.90, "adapter_bytes": 80_000, "base_bytes": 16e9,
     "overhead_unmerged": 1.25, "forgetting": 0.01},
    {"method": "lora", "quality": 0.88, "adapter_bytes": 6.5e6, "base_bytes": 16e9, "overhead_unmerged": 1.06,
     "overhead_merged": 1.0, "forgetting": 0.02},
    {"method": "full", "quality": 0.91, "adapter_bytes": 16e9, "base_bytes": 16e9, "overhead_unmerged": 1.0,
     "forgetting": 0.15},
]


def test_deploy_edge_explains_how_inference_cost_moved_the_ranking():
    from peftbench.recommend.deploy import deploy_ranking

    ranking = deploy_ranking(CANDIDATES, "edge")
    order = [e.method for e in ranking.entries]
    assert order[0] == "lora" and order.index("lora") < order.index("prompt_tuning")
    lora = ranking.entries[0]
    assert lora.serving == "merged" and lora.penalties["latency"] == 0 and "moved up from 2 to 1" in lora.explanation
    prompt = next(e for e in ranking.entries if e.method == "prompt_tuning")
    assert "x1.25" in prompt.explanation and "moved down" in prompt.explanation
    assert "pick changes from prompt_tuning to lora" in ranking.summary
    json.dumps(ranking.to_dict())


def test_deploy_server_with_many_adapters_serves_unmerged_and_weighs_storage():
    from peftbench.recommend.deploy import deploy_ranking

    ranking = deploy_ranking(CANDIDATES, "server", adapters_per_base=20)
    by = {e.method: e for e in ranking.entries}
    assert by["lora"].serving == "unmerged" and by["lora"].overhead == 1.06
    assert by["full"].serving == "as trained" and by["full"].penalties["storage"] > 0.1
    assert "20 tasks need 20 copies" in by["full"].explanation
    assert ranking.entries[-1].method == "full"


def test_deploy_latency_limit_ranks_offenders_last_and_bad_input_is_a_user_error():
    from peftbench.recommend.deploy import deploy_ranking

    ranking = deploy_ranking(CANDIDATES, "edge", max_latency_overhead=1.1)
    assert ranking.entries[-1].method == "prompt_tuning" and ranking.entries[-1].excluded
    assert "over the latency limit" in ranking.entries[-1].explanation
    for bad in ({"scenario": "cloud"}, {"scenario": "edge", "adapters_per_base": 0},
                {"scenario": "edge", "max_latency_overhead": 0.5}):
        scenario = bad.pop("scenario")
        with pytest.raises(UserError):
            deploy_ranking(CANDIDATES, scenario, **bad)
