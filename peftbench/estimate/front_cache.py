"""Answers for `estimate` calls without importing torch, transformers or peft (~9 s of imports here).

Two stores. Answers: one file per call, keyed by the call's arguments, the preset / config file's
contents, the hardware catalogue and the installed library versions (read from package metadata, which
imports nothing). Shape fits (`shape_fit`): one per setting (model, method, hyper-parameters, dtype,
optimizer, checkpointing, task), answering any batch size and sequence length; shipped for the presets
in `data/shape_fits.json.gz` (`python -m peftbench.estimate.ship_fits`). Both are keyed by meaning
(`peftbench.versions.ESTIMATOR_VERSION`, library versions, config, method, setting), not by source
bytes. Profiles measured on this machine (`cpu`) are not cached here: their figures depend on the
thread count.
"""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path
from typing import Any

from peftbench.cache import cache_root, key_of, library_versions, read_json, write_json_atomic
from peftbench.versions import ESTIMATOR_VERSION

SHIPPED_FITS = Path(__file__).parent / "data" / "shape_fits.json.gz"
_FIT_SETTINGS = ("overrides", "task_kind", "dtype", "mixed_precision", "optimizer", "gradient_checkpointing",
                 "num_labels")


def _config_content(model: str) -> str:
    from peftbench.models.configs import preset_for
    from peftbench.paths import is_dir, is_file

    preset = preset_for(model)
    path = preset / "config.json" if preset else Path(model).expanduser()
    if is_dir(path):
        path = path / "config.json"
    return path.read_text() if is_file(path) else model  # packaged / hub: the name stands for the config


def _key(model: str, method: str, kwargs: dict[str, Any]) -> str | None:
    from peftbench.hardware import DATA

    if "cpu" in [h.lower() for h in kwargs.get("hardware") or []]:
        return None
    return key_of(ESTIMATOR_VERSION, library_versions(), _config_content(model), DATA.read_text(), method, kwargs)


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
def fit_key(model: str, method: str, kwargs: dict[str, Any], device_kind: str) -> str:
    """What a fit means: the estimator's version, the libraries (by major.minor: the traced memory of one op
    sequence does not change in patch releases), the model's config, the method and the setting — every
    input of a trace except the batch size and sequence length. The method's own version and defaults are
    kept beside the fits (`shipped_methods`) and checked against the registry by the tests and `ship_fits`."""
    settings = {k: kwargs.get(k) for k in _FIT_SETTINGS}
    settings["overrides"] = settings["overrides"] or {}
    return key_of(ESTIMATOR_VERSION, library_versions(minor_only=True), _config_content(model), method, settings,
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


def shipped_methods() -> list[str] | None:
    """The method registry's names as the fits were shipped (so `--method all` need not import the
    registry, which imports torch); None when no fits of this estimator version ship."""
    methods = shipped_fits().get("methods")
    return sorted(methods) if methods else None
