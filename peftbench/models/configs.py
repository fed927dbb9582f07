"""Resolve a `--model` value to a transformers config: preset, packaged model, local path or hub id.

Presets (`presets/NAME/config.json`, indexed in `presets/index.json`) are config files transcribed from the
hub for models too large to ship, so the estimator and the recommender answer for them offline."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from peftbench.errors import UserError
from peftbench.paths import is_file

PRESETS_DIR = Path(__file__).parent / "presets"


@cache
def preset_index() -> dict[str, dict[str, str]]:
    return json.loads((PRESETS_DIR / "index.json").read_text())


def preset_for(name: str) -> Path | None:
    """A preset directory by peftbench name or by the hub id it was transcribed from, in any case."""
    index = preset_index()
    if name in index:
        return PRESETS_DIR / name
    lowered = name.lower()
    for key, entry in index.items():
        if lowered in (key.lower(), entry["hub_id"].lower()):
            return PRESETS_DIR / key
    return None


def canonical_model(model: str) -> str:
    """`model` as `estimate` and `recommend` take it, checked without importing transformers.

    A preset named by its hub id (`meta-llama/Llama-3.1-8B`) becomes the preset's name, so both spellings get
    one answer, one label and one cache entry. A packaged model, an existing path or an `org/name` hub id is
    kept. Anything else is refused at once with the closest names: without a "/" it cannot be a hub id, and
    trying the hub would cost tens of seconds of imports and network time-outs before the same refusal.
    """
    from peftbench.errors import did_you_mean, shown
    from peftbench.models.catalogue import CATALOGUE
    from peftbench.paths import exists

    if not isinstance(model, str) or not model.strip():
        raise UserError("--model needs a value: a preset (e.g. llama-3.2-1b), a packaged model, a config.json "
                        "or model folder, or a hub id like org/name")
    preset = preset_for(model)
    if preset is not None:
        return preset.name
    if model in CATALOGUE or exists(model):
        return model
    if "/" not in model:
        known = sorted({*preset_index(), *CATALOGUE})
        raise UserError(f"unknown model {shown(model)}{did_you_mean(model, known)} (not a preset, a packaged model "
                        "or an existing path, and a hub id needs its organisation: org/name; `peftbench models` "
                        "lists the presets)")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(model)
    except HFValidationError:
        raise UserError(f"unknown model {shown(model)}: not a preset, a packaged model, an existing path or a "
                        "hub id like org/name") from None
    return model


# Feed-forward blocks of two matrices (up, down); the other architectures gate them (gate, up, down). T5's
# config says which in `feed_forward_proj`.
UNGATED_TYPES = frozenset({"gpt2", "bloom", "bart", "mbart", "opt", "gpt_neox", "falcon", "bert", "roberta",
                           "deberta", "deberta-v2", "distilbert", "electra", "albert", "xlm-roberta", "mpnet"})
# Learned absolute position embeddings (the others use rotary, relative or ALiBi positions).
ABSOLUTE_POSITION_TYPES = frozenset({"gpt2", "bart", "mbart", "opt", "bert", "roberta", "distilbert", "electra",
                                     "albert", "xlm-roberta", "mpnet"})


def approx_parameters(cfg: dict) -> int:
    """Parameters of the model a config.json describes, counted from its shapes without building it (that
    imports torch): attention with grouped key/value heads, gated or plain feed-forward blocks, embeddings
    (the output projection too when untied), position tables. Norms and biases, well under 1%, are left out."""
    def first(*keys: str) -> int:
        return next((int(cfg[k]) for k in keys if cfg.get(k)), 0)

    hidden = first("hidden_size", "d_model", "n_embd")
    heads = first("num_attention_heads", "num_heads", "n_head", "encoder_attention_heads") or 1
    head_dim = first("head_dim", "d_kv") or hidden // heads
    attention = 2 * hidden * head_dim * (heads + (first("num_key_value_heads") or heads))
    model_type = cfg.get("model_type", "")
    gated = ("gated" in cfg["feed_forward_proj"]) if "feed_forward_proj" in cfg else model_type not in UNGATED_TYPES
    ffn = first("intermediate_size", "d_ff", "n_inner", "encoder_ffn_dim") or 4 * hidden
    mlp = (3 if gated else 2) * hidden * ffn
    layers = first("num_hidden_layers", "num_layers", "n_layer", "encoder_layers")
    decoder_layers = (first("num_decoder_layers", "decoder_layers") or layers) if cfg.get("is_encoder_decoder") else 0
    blocks = layers * (attention + mlp) + decoder_layers * (2 * attention + mlp)  # a decoder block cross-attends
    embeddings = first("vocab_size") * hidden * (1 if cfg.get("tie_word_embeddings", True) else 2)
    stacks = 2 if cfg.get("is_encoder_decoder") else 1
    positions = stacks * first("n_positions", "max_position_embeddings") * hidden \
        if model_type in ABSOLUTE_POSITION_TYPES else 0
    return blocks + embeddings + positions


def load_any_config(model: str):
    """The config for `model`; presets first (offline, instant), then peftbench's own resolution."""
    from transformers import AutoConfig

    preset = preset_for(model)
    path = Path(model).expanduser()
    if preset is not None:
        source = str(preset)
    elif is_file(path) and path.name.endswith(".json"):
        source = str(path.parent) if path.name == "config.json" else str(path)
        if path.name != "config.json":
            return _config_from_json(path)
    else:
        from peftbench.models.loading import load_config

        return load_config(model)[0]
    try:
        return AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read config for '{model}': {str(exc).splitlines()[0]}") from None


def _config_from_json(path: Path):
    from transformers import AutoConfig

    try:
        raw = json.loads(path.read_text())
        return AutoConfig.for_model(raw.pop("model_type"), **raw)
    except (KeyError, ValueError, json.JSONDecodeError) as exc:
        raise UserError(f"'{path}' is not a transformers config.json ({exc})") from None
