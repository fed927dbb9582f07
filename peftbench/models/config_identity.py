"""Which model a config builds, as peftbench's caches see it.

Shipped shape fits, served structures and the recommender's estimates are keyed by the model a config builds,
not by a file's bytes or name. A user's local copy of a preset's model — the hub's own config.json, which
spells out fields the preset leaves at their defaults, or an instruct variant that differs only in its token
ids — builds the preset's model, and is answered from the preset's shipped fits instead of being traced.

Two configs build the same model when they agree on every field once each is completed with its
architecture's defaults, except
- fields that only label a checkpoint (its name, the transformers version that wrote it), and
- fields that set a value the model computes with but no tensor's shape and no op: token ids, an
  initialiser's scale, a norm's epsilon, rotary embeddings' base frequency. tests/test_config_identity.py
  traces a preset with each of them changed and gets the same step, to the byte.
A field the defaults do not know keeps two configs apart: a missed match only costs a trace, a false one
would give a wrong answer.

The defaults are transformers' (`AutoConfig.for_model`), shipped in data/config_defaults.json for the presets'
architectures so that a cold `estimate` reads no transformers; `peftbench doctor` says whether the installed
transformers changed one of them (`python -m peftbench.models.config_identity` rewrites the file).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from peftbench.paths import is_dir, is_file

LABEL_FIELDS = ("_name_or_path", "transformers_version", "_commit_hash", "architectures")
VALUE_ONLY_FIELDS = ("bos_token_id", "eos_token_id", "initializer_range", "rms_norm_eps", "layer_norm_eps",
                     "layer_norm_epsilon", "rope_theta")
# Not value-only: the dtype a checkpoint is saved in. A CPU estimate counts which weights stay memory-mapped
# from the file, and that depends on it (`estimate.trace.unread_mapped_bytes`). transformers 5 writes `dtype`
# where older versions wrote `torch_dtype`: one field under either name.
CONFIG_DEFAULTS = Path(__file__).parent / "data" / "config_defaults.json"
REWRITE_DEFAULTS = "python -m peftbench.models.config_identity"


def canonical_config(config: dict[str, Any]) -> str:
    """A config as a cache key: sorted keys, without the fields that only label a checkpoint, so that a preset
    named by its hub id and a copy of its config.json are one entry."""
    return json.dumps({k: v for k, v in config.items() if k not in LABEL_FIELDS}, sort_keys=True, default=str)


def read_config_file(model: str) -> dict[str, Any] | None:
    """The JSON of a local config (a config.json, or a folder holding one); None where `model` is not one
    (a preset, packaged model or hub id) or it cannot be read (the tracing path reports why)."""
    path = Path(model).expanduser()
    if is_dir(path):
        path = path / "config.json"
    if not is_file(path):
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


@cache
def shipped_defaults() -> dict[str, dict[str, Any]]:
    """model_type -> the defaults of its config class, as shipped."""
    return json.loads(CONFIG_DEFAULTS.read_text()) if CONFIG_DEFAULTS.is_file() else {}


def completed(config: dict[str, Any]) -> dict[str, Any] | None:
    """The config with its architecture's defaults filled in, without label and value-only fields; None for an
    architecture whose defaults are not shipped."""
    defaults = shipped_defaults().get(str(config.get("model_type")))
    if defaults is None:
        return None
    ignored = {*LABEL_FIELDS, *VALUE_ONLY_FIELDS, "torch_dtype"}
    saved_dtype = config.get("dtype", config.get("torch_dtype"))
    merged = {**defaults, **config, "dtype": saved_dtype if saved_dtype is not None else defaults.get("dtype")}
    return {k: v for k, v in merged.items() if k not in ignored}


@cache
def _presets_by_build() -> dict[str, str]:
    """The presets' completed configs (as canonical JSON) -> preset name."""
    from peftbench.models.configs import PRESETS_DIR, preset_index

    out: dict[str, str] = {}
    for name in sorted(preset_index()):
        raw = json.loads((PRESETS_DIR / name / "config.json").read_text())
        built = completed(raw)
        if built is not None:
            out.setdefault(json.dumps(built, sort_keys=True, default=str), name)
    return out


def preset_built_by(config: dict[str, Any]) -> str | None:
    """The preset whose model this config builds, or None."""
    built = completed(config)
    return None if built is None else _presets_by_build().get(json.dumps(built, sort_keys=True, default=str))


def preset_of(model: str) -> str | None:
    """The preset `model` is: named, by its hub id, or a local config that builds its model; None otherwise."""
    from peftbench.models.configs import preset_for

    preset = preset_for(model)
    if preset is not None:
        return preset.name
    raw = read_config_file(model)
    return None if raw is None else preset_built_by(raw)


def model_identity(model: str) -> str:
    """What `model` stands for in a cache key: a preset's name (`preset_of`), a local config's canonical content
    (so that editing the file is a new model), or the name itself (a packaged model or a hub id: the name stands
    for the config)."""
    preset = preset_of(model)
    if preset is not None:
        return preset
    raw = read_config_file(model)
    return model if raw is None else canonical_config(raw)


def defaults_now(model_types: list[str]) -> dict[str, dict[str, Any]]:
    """The installed transformers' defaults for these architectures (imports transformers)."""
    from transformers import AutoConfig

    return {t: {k: v for k, v in AutoConfig.for_model(t).to_dict().items() if k not in LABEL_FIELDS}
            for t in sorted(model_types)}


def preset_model_types() -> list[str]:
    from peftbench.models.configs import PRESETS_DIR, preset_index

    return sorted({json.loads((PRESETS_DIR / n / "config.json").read_text())["model_type"] for n in preset_index()})


def defaults_drift() -> list[str]:
    """`model_type.field` for every default the installed transformers changed (empty: still valid).

    Only a changed value can match two different models: a config that sets the old default would pass for a
    preset that leaves the field out, which today's transformers builds with the new one. A field added or
    removed since cannot: both sides are completed from the same shipped table, and a config that sets a
    field the table lacks is told apart."""
    now = json.loads(json.dumps(defaults_now(preset_model_types()), default=str))
    shipped = shipped_defaults()
    return [f"{t}.{k}" for t in sorted(now) for k in sorted(now[t])
            if k in shipped.get(t, {}) and shipped[t][k] != now[t][k]]


def main() -> int:
    now = defaults_now(preset_model_types())
    CONFIG_DEFAULTS.write_text(json.dumps(now, sort_keys=True, indent=1, default=str) + "\n")
    print(f"wrote the defaults of {len(now)} architectures to {CONFIG_DEFAULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
