"""Resolve a `--model` value to a transformers config: preset, packaged model, local path or hub id.

Presets (`presets/NAME/config.json`, indexed in `presets/index.json`) are config files transcribed from the
hub for models too large to ship, so the estimator and the recommender answer for them offline."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from peftbench.errors import UserError
from peftbench.paths import is_file

PRESETS = Path(__file__).parent / "presets"


@cache
def preset_index() -> dict[str, dict[str, str]]:
    return json.loads((PRESETS / "index.json").read_text())


def preset_for(name: str) -> Path | None:
    """A preset directory by peftbench name or by the hub id it was transcribed from."""
    index = preset_index()
    if name in index:
        return PRESETS / name
    for key, entry in index.items():
        if entry["hub_id"].lower() == name.lower():
            return PRESETS / key
    return None


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
