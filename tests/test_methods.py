"""The method registry: every method declares a family and defaults, and wraps real models as peft does."""

from __future__ import annotations

import pytest

from peftbench.errors import MethodNotApplicable, UserError
from peftbench.methods import FAMILIES, MethodContext, count_parameters, get_method, registry

ENCODER_CLS = MethodContext("encoder", "bert", "classification")
REQUIRED = {"full", "lora", "dora", "rslora", "adalora", "loha", "lokr", "vera", "oft", "boft", "qlora",
            "adapter", "ia3", "bitfit", "ln_tuning", "prompt_tuning", "prefix_tuning", "p_tuning"}


def test_registry_has_every_method_with_family_and_learning_rate():
    methods = registry()
    assert REQUIRED <= set(methods)
    assert {m.family for m in methods.values()} == set(FAMILIES)
    for method in methods.values():
        assert method.defaults["learning_rate"] > 0
    # PEFT methods start from small or zero updates and need larger steps than full fine-tuning.
    full_lr = methods["full"].defaults["learning_rate"]
    assert all(m.defaults["learning_rate"] > full_lr for m in methods.values() if m.name != "full")


def test_overrides_accept_peft_config_keys_and_reject_others():
    lora = get_method("lora")
    assert lora.hyperparameters({"r": 32, "lora_dropout": 0.0})["r"] == 32
    assert lora.hyperparameters({"use_rslora": True})["use_rslora"] is True  # any LoraConfig field
    with pytest.raises(UserError, match="has no hyper-parameter 'rank'"):
        lora.hyperparameters({"rank": 4})


@pytest.mark.parametrize("name", sorted(REQUIRED - {"qlora", "prefix_tuning"}))
def test_every_method_wraps_the_real_encoder(name, minilm_dir):
    from transformers import AutoModelForSequenceClassification

    method = get_method(name)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_dir, num_labels=3)
    hyperparameters = method.hyperparameters()
    if "total_step" in hyperparameters:
        hyperparameters["total_step"] = 10
    wrapped = method.apply(model, hyperparameters, ENCODER_CLS)
    trainable, total = count_parameters(wrapped)
    assert 0 < trainable <= total
    if method.uses_peft:  # our count equals peft's own
        assert (trainable, total) == wrapped.get_nb_trainable_parameters()
    # every method trains the new classification head
    assert any(p.requires_grad for n, p in wrapped.named_parameters() if "classifier" in n)


def test_prefix_tuning_and_qlora_say_why_they_cannot_run():
    with pytest.raises(MethodNotApplicable, match="encoder"):
        get_method("prefix_tuning").apply(None, {}, ENCODER_CLS)
    assert "CUDA" in get_method("qlora").not_applicable_reason(MethodContext("decoder", "llama", "generation"))


def test_configurations_of_one_method_are_told_apart_in_the_results_table(tmp_path):
    """`lora` at its defaults and `lora r=16` are different rows for users comparing them; the learning rate a
    suite scales for every method does not make a variant."""
    import json

    from peftbench.cli.results import seed_summary
    from peftbench.results import load_table

    lora = get_method("lora")
    default, rank16 = lora.hyperparameters(), lora.hyperparameters({"r": 16, "target_modules": ["query", "value"]})
    assert lora.variant_label({**default, "learning_rate": 2e-3}) == "lora"
    assert lora.variant_label(rank16) == "lora r=16 target_modules=query,value"
    path = tmp_path / "runs.jsonl"
    rows = [{"run_id": str(i), "suite": "s", "task": "t", "method": "lora", "hyperparameters": hp, "seed": i % 2,
             "status": "ok", "metrics": {"accuracy": acc}, "train_seconds": 1.0,
             "memory": {"peak_rss_train_bytes": 2**20}}
            for i, (hp, acc) in enumerate([(default, 50.0), (default, 52.0), (rank16, 60.0)])]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = seed_summary(load_table([path]))
    assert summary.loc[("t", "lora"), "seeds"] == 2 and summary.loc[("t", "lora"), "accuracy"] == "51.0 ± 1.4"
    assert summary.loc[("t", "lora r=16 target_modules=query,value"), "seeds"] == 1


@pytest.mark.parametrize("name", ["prompt_tuning", "p_tuning"])
def test_soft_prompt_decoding_with_the_kv_cache_equals_decoding_without(name):
    """Virtual tokens enter once, at prefill; cached greedy decoding must give what uncached decoding gives
    (with peft 0.21 on transformers 5 it did not, until peftbench bridged the renamed cache argument)."""
    import torch

    from peftbench.models import load_for_task
    from peftbench.models.loading import load_config

    config, _, _ = load_config("smollm2-135m")
    method = get_method(name)
    torch.manual_seed(0)
    model = method.apply(load_for_task("smollm2-135m", "generation", dtype="fp32").model, method.hyperparameters(),
                         MethodContext("decoder", config.model_type, "generation", "cpu"))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:  # make the virtual tokens matter
                p.add_(torch.randn_like(p) * 0.5)
    model.eval()
    ids = torch.randint(100, 1000, (2, 24))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding
    seen = []
    hook = model.get_base_model().model.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append((kwargs.get("input_ids") if kwargs.get("input_ids") is not None
                                               else kwargs["inputs_embeds"]).shape[1]), with_kwargs=True)
    with torch.no_grad():
        cached = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=2)
        hook.remove()
        uncached = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
                                  pad_token_id=2, use_cache=False)
    assert torch.equal(cached, uncached)
    assert seen[1:] == [1] * (len(seen) - 1)  # after prefill, one new token per step


def test_prefix_tuning_says_where_it_cannot_decode():
    from peftbench.methods.decoding import transformers_renamed_cache

    prefix = get_method("prefix_tuning")
    assert "encoder-only" in prefix.not_applicable_reason(MethodContext("encoder", "bert", "classification"))
    # Causal LMs decode through peftbench's bridge; an encoder-decoder's generate is not bridged.
    assert prefix.not_applicable_reason(MethodContext("decoder", "llama", "generation", "cpu", decodes=True)) is None
    seq2seq = prefix.not_applicable_reason(MethodContext("encoder-decoder", "t5", "generation", "cpu", decodes=True))
    assert (seq2seq is not None and "cache" in seq2seq) == transformers_renamed_cache()
    # Scored by logits, or only trained (the estimator): prefix tuning applies.
    assert prefix.not_applicable_reason(MethodContext("decoder", "llama", "multiple_choice", "cpu")) is None
    classify = prefix.not_applicable_reason(MethodContext("decoder", "llama", "classification", "cpu"))
    assert (classify is not None and "sequence classification" in classify) == transformers_renamed_cache()
    assert prefix.not_applicable_reason(MethodContext("decoder", "llama", "generation")) is None


def test_prefix_tuned_decoding_attends_to_the_prefix_and_equals_decoding_by_full_forward_passes():
    """peft 0.21's generate on transformers 5 silently drops the prefix (the model then decodes like its base).
    peftbench's bridge must give exactly what greedy decoding by repeated full forward passes gives -- peft's
    training forward, which does read the prefix -- on a left-padded batch."""
    import torch

    from peftbench.models import load_for_task
    from peftbench.models.loading import load_config

    config, _, _ = load_config("smollm2-135m")
    method = get_method("prefix_tuning")
    torch.manual_seed(0)
    model = method.apply(load_for_task("smollm2-135m", "generation", dtype="fp32").model, method.hyperparameters(),
                         MethodContext("decoder", config.model_type, "generation", "cpu", decodes=True))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:  # make the prefix matter
                p.mul_(3.0)
    model.eval()
    ids = torch.randint(100, 1000, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding
    new = 5
    with torch.no_grad():
        bridged = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, do_sample=False,
                                 pad_token_id=2)
        assert bridged.shape == (2, 12 + new) and torch.equal(bridged[:, :12], ids)
        for row in range(2):
            x = ids[row:row + 1, int((mask[row] == 0).sum()):]  # the row without its padding
            for _ in range(new):
                logits = model(input_ids=x, attention_mask=torch.ones_like(x)).logits[:, -1]
                x = torch.cat([x, logits.argmax(-1, keepdim=True)], dim=1)
            assert torch.equal(bridged[row, 12:], x[0, -new:])
        base = model.get_base_model().generate(input_ids=ids, attention_mask=mask, max_new_tokens=new,
                                               do_sample=False, pad_token_id=2)
    assert not torch.equal(bridged, base)  # the prefix changed what is decoded


def test_peft_prefix_tuning_for_sequence_classification_fails_where_peftbench_skips_it():
    """Why prefix tuning is skipped on decoder classification: peft's wrapper itself raises there on this
    transformers. If a peft release fixes it, this test fails and the skip in `_needs_kv_cache` should go."""
    import peft
    import torch

    from peftbench.methods.decoding import transformers_renamed_cache
    from peftbench.models import load_for_task

    model = load_for_task("smollm2-135m", "classification", num_labels=3, dtype="fp32").model
    model.config.pad_token_id = model.config.pad_token_id or 0
    wrapped = peft.get_peft_model(model, peft.PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=4))
    ids = torch.randint(100, 1000, (1, 8))
    if transformers_renamed_cache():
        with pytest.raises(ValueError, match="past key values"):
            wrapped(input_ids=ids, attention_mask=torch.ones_like(ids))
    else:
        wrapped(input_ids=ids, attention_mask=torch.ones_like(ids))


def test_an_old_skip_stands_only_where_the_method_still_does_not_apply():
    """Prefix tuning's applicability revision 2 (it decodes on causal LMs): its older skips on a decoder's
    generation task are rerun on resume (and coverage counts them as not yet run); on an encoder they stand."""
    from peftbench.methods.base import recorded_skip_stands as stands
    from peftbench.record import RunRecord

    def recorded_skip_stands(fields: dict) -> bool:
        return stands(RunRecord.from_dict({"run_id": "r", "suite": "s", "task": "t", **fields}))

    old = {"method": "prefix_tuning", "status": "skipped", "device": {"type": "cpu"}}
    assert not recorded_skip_stands({**old, "architecture": "decoder", "model_type": "llama",
                                     "task_kind": "generation"})
    assert recorded_skip_stands({**old, "architecture": "encoder", "model_type": "bert",
                                 "task_kind": "classification"})
    assert recorded_skip_stands({**old, "architecture": "decoder", "model_type": "llama", "task_kind": "generation",
                                 "applicability": get_method("prefix_tuning").applicability})
    assert not recorded_skip_stands(old)  # too little recorded to judge: run it again
    assert recorded_skip_stands({**old, "method": "qlora", "architecture": "decoder", "model_type": "llama"})
