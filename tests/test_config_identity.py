"""A local config is answered as the model it builds: the hub's own config.json of a preset's model (fields
the preset leaves at their defaults spelled out, an instruct variant's token ids) gets the preset's shipped
answers instead of minutes of tracing, and editing a local config is never answered from the old one's cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peftbench.models import config_identity
from peftbench.models.configs import PRESETS_DIR

# Llama-3.1-8B-Instruct's config.json as the hub ships it: the preset's model, with the defaults spelled out
# (attention_dropout, pretraining_tp, use_cache), the instruct model's three end-of-turn token ids and the
# transformers version that wrote it.
HUB_STYLE_LLAMA_31_8B_INSTRUCT = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu", "hidden_size": 4096,
    "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 131072, "mlp_bias": False,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.43.0.dev0", "use_cache": True, "vocab_size": 128256}


def _write(folder: Path, config: dict) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


def test_the_hubs_config_of_a_presets_model_is_answered_from_the_presets_shipped_fits(monkeypatch, tmp_path):
    from peftbench.estimate import api

    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(api, "estimate_config", lambda *a, **k: pytest.fail("traced: the preset's fit was not used"))
    local = _write(tmp_path / "Llama-3.1-8B-Instruct", HUB_STYLE_LLAMA_31_8B_INSTRUCT)
    ours = api.estimate(local, "lora", batch_size=4, seq_len=1024, hardware=["a10g"])
    preset = api.estimate("llama-3.1-8b", "lora", batch_size=4, seq_len=1024, hardware=["a10g"])
    assert ours.model == local and ours.peak_bytes == preset.peak_bytes
    assert "builds the same model as the preset llama-3.1-8b" in ours.settings["answered_from"]


def test_recommend_for_the_hubs_config_of_a_presets_model_traces_nothing(monkeypatch, tmp_path):
    from peftbench.estimate import api
    from peftbench.recommend.engine import recommend

    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(api, "estimate_config",
                        lambda *a, **k: pytest.fail("traced: the preset's shipped estimates and fits were not used"))
    local = _write(tmp_path / "Llama-3.1-8B-Instruct", HUB_STYLE_LLAMA_31_8B_INSTRUCT)
    ours = recommend("summarization", gpu="24GB", model=local)
    preset = recommend("summarization", gpu="24GB", model="llama-3.1-8b")
    assert [(c.method, c.peak_bytes) for c in ours.ranking] == [(c.method, c.peak_bytes) for c in preset.ranking]


@pytest.mark.parametrize("field, value", [("intermediate_size", 11008), ("num_key_value_heads", 32),
                                          ("vocab_size", 32000), ("tie_word_embeddings", True),
                                          ("max_position_embeddings", 4096), ("some_new_field", 1),
                                          ("torch_dtype", "float32"), ("dtype", "float16")])
def test_a_config_that_differs_in_what_it_builds_is_not_the_preset(tmp_path, field, value):
    """A changed shape, a field the shipped defaults do not know, and another saved dtype (a CPU estimate counts
    the weights that stay memory-mapped from the checkpoint): a missed match costs a trace, a false one would
    give a wrong answer."""
    changed = _write(tmp_path / "m", {**HUB_STYLE_LLAMA_31_8B_INSTRUCT, field: value})
    assert config_identity.preset_built_by(json.loads((Path(changed) / "config.json").read_text())) is None
    assert config_identity.model_identity(changed) != "llama-3.1-8b"


def test_the_saved_dtype_under_either_name_is_one_field():
    """transformers 5 writes `dtype` where older versions wrote `torch_dtype`."""
    renamed = {k: v for k, v in HUB_STYLE_LLAMA_31_8B_INSTRUCT.items() if k != "torch_dtype"}
    assert config_identity.preset_built_by({**renamed, "dtype": "bfloat16"}) == "llama-3.1-8b"


def test_editing_a_local_config_is_a_new_model_to_the_recommenders_cache(tmp_path):
    """Keyed by content, not by path: the cost of the edited model is never read from the old one's entry."""
    from peftbench.recommend.feasibility import CostModel, resolve_gpu

    base = {**HUB_STYLE_LLAMA_31_8B_INSTRUCT, "intermediate_size": 11008}
    local = _write(tmp_path / "m", base)
    costs = CostModel(resolve_gpu("24GB", None), "generation", 512)
    before = costs._key(local, "lora", {}, 4, False)
    _write(tmp_path / "m", {**base, "num_hidden_layers": 40})
    assert costs._key(local, "lora", {}, 4, False) != before


def test_the_presets_are_told_apart():
    """Every preset builds its own model, except T0-3B, which is FLAN-T5-XL's architecture exactly (both are T5
    v1.1 XL): answering one from the other's fits is right."""
    built: dict[str, list[str]] = {}
    for name in sorted(p.name for p in PRESETS_DIR.iterdir() if (p / "config.json").is_file()):
        raw = json.loads((PRESETS_DIR / name / "config.json").read_text())
        built.setdefault(json.dumps(config_identity.completed(raw), sort_keys=True), []).append(name)
    assert sorted(names for names in built.values() if len(names) > 1) == [["flan-t5-xl", "t0-3b"]]


@pytest.mark.parametrize("preset", ["llama-3.2-1b", "bert-base"])
def test_value_only_fields_change_no_traced_byte(tmp_path, preset):
    """What `config_identity` ignores is checked, not assumed: the preset's config with every value-only field
    changed or added traces the same step (memory per phase and category, FLOPs, bytes moved, kernels)."""
    from peftbench.estimate.core import traced
    from peftbench.estimate.trace import Shape
    from peftbench.methods import get_method
    from peftbench.models.configs import load_any_config

    raw = json.loads((PRESETS_DIR / preset / "config.json").read_text())
    changed_values = {"bos_token_id": 7, "eos_token_id": [5, 6], "initializer_range": 0.5, "rms_norm_eps": 0.25,
                      "layer_norm_eps": 0.25, "layer_norm_epsilon": 0.25, "rope_theta": 1234.0}
    assert set(changed_values) == set(config_identity.VALUE_ONLY_FIELDS)
    changed = {**raw, **changed_values}  # changed where the preset sets them, added where it does not
    method = get_method("lora")
    shape = Shape(2, 64, device="cuda")
    kind = "generation" if raw["model_type"] == "llama" else "classification"

    def trace(config_dir: str) -> dict:
        out = traced(load_any_config(config_dir), method, method.hyperparameters(None), kind, shape, use_cache=False)
        out.pop("computed_with", None)
        return out

    assert trace(_write(tmp_path / "changed", changed)) == trace(str(PRESETS_DIR / preset))
    assert config_identity.preset_built_by(changed) == preset


def test_the_shipped_architecture_defaults_are_the_installed_transformers():
    """Stale defaults could let a config that leaves a field out pass for one that sets the old default:
    `peftbench doctor` reports the same check, and `python -m peftbench.models.config_identity` rewrites them."""
    assert config_identity.defaults_drift() == []


def test_a_changed_default_is_reported_and_an_added_field_is_not(monkeypatch):
    shipped = json.loads(config_identity.CONFIG_DEFAULTS.read_text())
    shipped["llama"]["attention_dropout"] = 0.5  # a release that changed this default
    del shipped["qwen2"]["use_cache"]  # a field this release added: both sides are completed without it
    monkeypatch.setattr(config_identity, "shipped_defaults", lambda: shipped)
    assert config_identity.defaults_drift() == ["llama.attention_dropout"]
