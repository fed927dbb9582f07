"""Answers for `estimate` calls without importing torch, transformers or peft (~9 s of imports here).

Two stores. Answers: one file per call, keyed by the call's arguments, the model's config and what the
estimator means (`peftbench.cache.meaning_key`). Shape fits (`shape_fit`): one per setting (model, method,
hyper-parameters, dtype, optimizer, checkpointing, task), answering any batch size and sequence length;
shipped for the presets in `data/shape_fits.json.gz` (`python -m peftbench.estimate.ship_fits`). Both are
keyed by meaning — the estimator's version, the config's content, the method and the setting as it affects
memory — not by source bytes or library versions: each fit records the torch / transformers / peft it was
traced with, and `peftbench doctor` re-traces a few to say whether today's libraries still agree. Profiles
measured on this machine (`cpu`) are not cached here: their figures depend on the thread count.
"""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path
from typing import Any

from peftbench.cache import cache_root, key_of, meaning_key, read_json, write_json_atomic
from peftbench.versions import ESTIMATOR_VERSION

SHIPPED_FITS = Path(__file__).parent / "data" / "shape_fits.json.gz"
_FIT_SETTINGS = ("overrides", "task_kind", "dtype", "mixed_precision", "optimizer", "gradient_checkpointing",
                 "num_labels")


# Hyper-parameters that change no tensor's size or count: a learning rate, and the scalar alpha a low-rank
# update is multiplied by (the multiply runs whatever its value).
MEMORY_NEUTRAL = ("learning_rate", "lora_alpha", "alpha")
# Fits answer classification with any label count up to this: the head is hidden x labels, under 0.01% of
# a fitted preset's peak at 128 labels; beyond it the call traces.
FIT_LABELS_UP_TO = 128


def _config_content(model: str) -> str:
    """The config `model` names, as the model it builds (`models.config_identity`): a preset's, for the preset,
    its hub id or a local config that builds the same model; a local config's own; the name for a packaged
    model or a hub id (the name stands for the config)."""
    from peftbench.models.config_identity import canonical_config, preset_of, read_config_file
    from peftbench.models.configs import PRESETS_DIR

    preset = preset_of(model)
    raw = read_config_file(str(PRESETS_DIR / preset) if preset else model)
    return model if raw is None else canonical_config(raw)


def _key(model: str, method: str, kwargs: dict[str, Any]) -> str | None:
    if "cpu" in [h.lower() for h in kwargs.get("hardware") or []]:
        return None
    return key_of(meaning_key("estimates"), _config_content(model), method, kwargs)


def _path(key: str) -> Path:
    return cache_root() / "estimates" / f"answer-{key}.json"


def front_load(model: str, method: str, kwargs: dict[str, Any]) -> dict[str, Any] | None:
    key = _key(model, method, kwargs)
    return None if key is None else read_json(_path(key))


def front_store(model: str, method: str, kwargs: dict[str, Any], answer: dict[str, Any]) -> None:
    key = _key(model, method, kwargs)
    if key is not None:
        write_json_atomic(_path(key), answer)


# ---- shape fits ----------------------------------------------------------------------------------------
def fit_settings(method: str, kwargs: dict[str, Any], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """The setting as it affects a trace: hyper-parameters that differ from the method's declared defaults
    (memory-neutral ones left out), the task kind as the model sees it (multiple choice scores with the
    language-model head, as generation does) and the label count only where a classification head has it.
    `defaults`: the method's declared hyper-parameters; by default as the shipped fits record them (the
    registry imports torch), which the tests check against the registry."""
    settings = {k: kwargs.get(k) for k in _FIT_SETTINGS}
    if defaults is None:
        defaults = (shipped_fits().get("methods", {}).get(method) or {}).get("hyperparameters", {})
    settings["overrides"] = {k: v for k, v in (settings["overrides"] or {}).items()
                             if k not in MEMORY_NEUTRAL and not (k in defaults and defaults[k] == v)}
    if settings["task_kind"] == "multiple_choice":
        settings["task_kind"] = "generation"
    if settings["task_kind"] != "classification":
        settings["num_labels"] = None
    elif (settings["num_labels"] or 2) <= FIT_LABELS_UP_TO:
        settings["num_labels"] = "any"
    return settings


def fit_key(model: str, method: str, kwargs: dict[str, Any], device_kind: str,
            defaults: dict[str, Any] | None = None) -> str:
    """What a fit means: the estimator's version, the model's config, the method and the setting
    (`fit_settings`) — every input of a trace except the batch size and sequence length. Not the library
    versions: a fit records those it was traced with, and the canaries check them. The method's own version
    and defaults are kept beside the fits (the store's `methods`) and checked against the registry by the tests
    and `ship_fits`."""
    return key_of(ESTIMATOR_VERSION, _config_content(model), method, fit_settings(method, kwargs, defaults),
                  device_kind)


@cache
def shipped_fits() -> dict[str, Any]:
    """The shipped store, or an empty one when it was made by another estimator version."""
    if not SHIPPED_FITS.is_file():
        return {}
    with gzip.open(SHIPPED_FITS, "rt") as f:
        store = json.load(f)
    return store if store.get("estimator_version") == ESTIMATOR_VERSION else {}


def load_fit(model: str, method: str, kwargs: dict[str, Any], device_kind: str) -> dict[str, Any] | None:
    """The shipped fit for this setting, or None (not shipped, or made by another estimator or libraries)."""
    return shipped_fits().get("fits", {}).get(fit_key(model, method, kwargs, device_kind))

