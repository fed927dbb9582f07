"""Candidate base models when the user names none: the estimator's presets and peftbench's packaged models."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from peftbench.models.catalogue import CATALOGUE, ENCODER_TYPES
from peftbench.models.configs import PRESETS_DIR

# 2022-23 models kept as presets only to check the estimator against the peft README's published memory
# figures; nobody would be advised to start a project on them today.
VALIDATION_ONLY = frozenset({"t0-3b", "mt0-xxl", "bloomz-7b1"})


@dataclass(frozen=True)
class ModelInfo:
    name: str
    architecture: str
    approx_params: float  # from the config's shapes; only orders candidates, the estimator counts exactly


def _approx_params(cfg: dict) -> float:
    hidden = cfg.get("hidden_size") or cfg.get("d_model") or cfg.get("n_embd") or 0
    layers = (cfg.get("num_hidden_layers") or cfg.get("num_layers") or cfg.get("n_layer") or 0) + \
        (cfg.get("num_decoder_layers") or 0)
    ffn = cfg.get("intermediate_size") or cfg.get("d_ff") or cfg.get("n_inner") or 4 * hidden
    return float(cfg.get("vocab_size", 0) * hidden + layers * (4 * hidden * hidden + 3 * hidden * ffn))


def _architecture(cfg: dict) -> str:
    if cfg.get("is_encoder_decoder"):
        return "encoder-decoder"
    return "encoder" if cfg.get("model_type") in ENCODER_TYPES else "decoder"


def candidate_models(kind: str) -> list[ModelInfo]:
    """Largest first. Generation and multiple choice need a decoder or encoder-decoder."""
    infos = {spec.name: ModelInfo(spec.name, spec.family, float(spec.parameters)) for spec in CATALOGUE.values()}
    for folder in sorted(p for p in PRESETS_DIR.glob("*") if (p / "config.json").is_file()
                         and p.name not in VALIDATION_ONLY):
        cfg = json.loads((folder / "config.json").read_text())
        infos.setdefault(folder.name, ModelInfo(folder.name, _architecture(cfg), _approx_params(cfg)))
    usable = [m for m in infos.values() if kind == "classification" or m.architecture != "encoder"]
    return sorted(usable, key=lambda m: (-m.approx_params, m.name))


def model_architecture(name: str) -> str | None:
    if name in CATALOGUE:
        return CATALOGUE[name].family
    path = PRESETS_DIR / name / "config.json"
    if not path.is_file():
        path = Path(name).expanduser() / "config.json"
    if path.is_file():
        return _architecture(json.loads(path.read_text()))
    return None
