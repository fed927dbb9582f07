"""Training knobs: one step shared by every loop, gradient accumulation, gradient checkpointing, run ids."""

from __future__ import annotations

import pytest
import torch


def _tiny_bert():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, num_labels=3)
    return BertForSequenceClassification(config)


def _grads_after_step(micro_batches: list[dict]) -> dict[str, torch.Tensor]:
    from peftbench import training

    model = _tiny_bert()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.0)
    seen = {}

    def hook(m, step):  # runs after optimizer.step, before zero_grad: the accumulated gradient
        seen.update({n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})

    training.train_step(model, micro_batches, optimizer, None, params, 0, None, hook)
    assert all(p.grad is None for p in params)  # zero_grad(set_to_none=True) ran
    return seen


def test_accumulated_gradient_equals_the_full_batch_gradient():
    torch.manual_seed(1)
    ids = torch.randint(5, 50, (8, 12))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.randint(0, 3, (8,))}
    full = _grads_after_step([batch])
    for parts in (2, 4):
        size = 8 // parts
        micro = [{k: v[i * size:(i + 1) * size] for k, v in batch.items()} for i in range(parts)]
        accumulated = _grads_after_step(micro)
        assert set(accumulated) == set(full)
        for name, grad in full.items():
            torch.testing.assert_close(accumulated[name], grad, rtol=1e-4, atol=1e-6)


def test_train_counts_optimizer_steps_and_draws_micro_batches():
    from peftbench import training

    model = _tiny_bert()
    optimizer, scheduler = training.make_optimizer(model, 1e-3, 0.0, 3, 0.1)
    drawn = []

    def batches():
        while True:
            ids = torch.randint(5, 50, (2, 6))
            drawn.append(ids)
            yield {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.zeros(2, dtype=torch.long)}

    result = training.train(model, batches(), optimizer, scheduler, 3, 1.0, "cpu", accumulation_steps=4)
    assert result.steps == 3 and len(result.loss_curve) == 3 and len(drawn) == 12 and result.tokens == 12 * 12
    assert scheduler.last_epoch == 3  # the schedule counts optimizer steps, not micro-batches


def test_gradient_checkpointing_reaches_the_model_and_prefix_tuning_is_refused():
    from transformers import LlamaConfig, LlamaForCausalLM

    from peftbench.errors import MethodNotApplicable
    from peftbench.methods import MethodContext, get_method
    from peftbench.training import enable_gradient_checkpointing

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32)
    method = get_method("lora")
    model = method.apply(LlamaForCausalLM(config), method.hyperparameters(),
                         MethodContext("decoder", "llama", "generation", "cpu"))
    inner = model.base_model.model
    flag = "is_activation_checkpointing" if hasattr(inner, "is_activation_checkpointing") \
        else "is_gradient_checkpointing"
    assert not getattr(inner, flag)
    enable_gradient_checkpointing(model, "lora")
    assert getattr(inner, flag)
    ids = torch.randint(0, 64, (2, 8))
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()  # checkpointed blocks still give LoRA its gradients
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    with pytest.raises(MethodNotApplicable):
        enable_gradient_checkpointing(model, "prefix_tuning")


def test_accumulation_is_validated_and_adding_it_changes_no_existing_run_id():
    from peftbench.errors import UserError
    from peftbench.overrides import parse_overrides
    from peftbench.runs.plan import build_plan
    from peftbench.suites import TrainConfig

    for bad in (0, -2, 1.5, True, "4"):
        with pytest.raises(UserError, match="gradient_accumulation_steps"):
            TrainConfig.build({"gradient_accumulation_steps": bad})
    with pytest.raises(UserError, match="gradient_checkpointing"):
        TrainConfig.build({"gradient_checkpointing": "yes"})
    base = ["suite=smoke", "tasks=[rt_sentiment]", "methods=[lora]"]
    plain = build_plan(parse_overrides(base)).specs[0]
    one = build_plan(parse_overrides([*base, "train.gradient_accumulation_steps=1"])).specs[0]
    four = build_plan(parse_overrides([*base, "train.gradient_accumulation_steps=4"])).specs[0]
    ckpt = build_plan(parse_overrides([*base, "train.gradient_checkpointing=true"])).specs[0]
    assert plain.train.gradient_accumulation_steps == 1
    assert plain.run_id == one.run_id != four.run_id and ckpt.run_id != plain.run_id
    # The committed reference runs keep their configuration ids: the formula before the key existed.
    import json

    from peftbench.cache import key_of
    from peftbench.record import RunRecord
    from peftbench.results import reference_results_dir

    record = json.loads((reference_results_dir() / "smoke" / "runs.jsonl").read_text().splitlines()[0])
    fields = ("suite", "task", "model", "method", "hyperparameters", "scale", "data_fingerprint")
    before = key_of([record.get(k) for k in fields],
                    {k: v for k, v in record["train_config"].items() if k != "threads"}, length=12)

    def recomputed(stored: dict) -> str:  # as for a record written before it stored its id
        return RunRecord.from_dict({k: v for k, v in stored.items() if k != "config_id"}).config_id
    with_accumulation = {**record, "train_config": {**record["train_config"], "gradient_accumulation_steps": 1}}
    assert recomputed(with_accumulation) == recomputed(record) == RunRecord.from_dict(record).config_id == before


@pytest.mark.slow
def test_checkpointing_and_accumulation_lower_a_real_smollm2_runs_peak(tmp_path):
    """benchmarks/training_knobs.py's three runs, one optimizer step each: both knobs lower the peak."""
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("training_knobs", REPO / "benchmarks" / "training_knobs.py")
    knobs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(knobs)
    results = knobs.measure(tmp_path, steps=1)
    base = results["batch 8"]
    assert results["batch 8, gradient checkpointing"]["peak_bytes"] < 0.9 * base["peak_bytes"]
    accumulated = results["micro-batch 2 x 4 accumulation"]
    assert accumulated["effective_batch"] == base["effective_batch"] == 8
    assert accumulated["peak_bytes"] < 0.9 * base["peak_bytes"]


def test_a_recommended_setting_is_reproducible_with_run_overrides():
    """The `run:` line `recommend` prints, as printed, builds a plan with exactly the suggested settings."""
    from types import SimpleNamespace

    from peftbench.overrides import parse_overrides
    from peftbench.recommend.render import RunTarget, override_line
    from peftbench.runs.plan import build_plan

    hyperparameters = {"r": 16, "lora_alpha": 32, "learning_rate": 0.0003, "target_modules": ["query", "value"]}
    cost = SimpleNamespace(batch_size=2, accumulation=4, gradient_checkpointing=True)
    target = RunTarget("minilm", "cpu", True, "smoke/rt_sentiment")
    line = override_line("lora", hyperparameters, cost, 100, None, target)
    tokens = line.split(" ")[2:]  # after "peftbench run"
    assert line.startswith("peftbench run suite=smoke tasks=[rt_sentiment] model=minilm methods=[lora]")
    spec = build_plan(parse_overrides(tokens)).specs[0]
    assert spec.method == "lora" and spec.hyperparameters["r"] == 16 and spec.hyperparameters["lora_alpha"] == 32
    assert spec.hyperparameters["target_modules"] == ["query", "value"]
    assert spec.train.learning_rate == 0.0003 and spec.train.batch_size == 2
    assert spec.train.gradient_accumulation_steps == 4 and spec.train.gradient_checkpointing is True
    assert spec.train.max_steps == 100
