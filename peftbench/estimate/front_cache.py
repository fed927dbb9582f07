"""Answers for `estimate` calls without importing torch, transformers or peft (~9 s of imports here).

Two stores. Answers: one file per call, keyed by the call's arguments, the preset / config file's
contents, the hardware catalogue and the installed library versions (read from package metadata, which
imports nothing). Shape fits (`shape_fit`): one per setting (model, method, hyper-parameters, dtype,
optimizer, checkpointing, task), answering any batch size and sequence length; shipped for the presets
in `data/shape_fits.json.gz` (`python -m peftbench.estimate.ship_fits`). Profiles measured on this
machine (`cpu`) are not cached here: their figures depend on the thread count.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

SHIPPED_FITS = Path(__file__).parent / "data" / "shape_fits.json.gz"
_FIT_SETTINGS = ("overrides", "task_kind", "dtype", "mixed_precision", "optimizer", "gradient_checkpointing",
                 "num_labels")


def _config_content(model: str) -> str:
    from peftbench.estimate.configs import preset_for

    preset = preset_for(model)
    path = preset / "config.json" if preset else Path(model).expanduser()
    if path.is_dir():
        path = path / "config.json"
    return path.read_text() if path.is_file() else model  # packaged / hub: the name stands for the config


def _key(model: str, method: str, kwargs: dict[str, Any]) -> str | None:
    from peftbench.estimate.core import TRACE_VERSION
    from peftbench.hardware import DATA

    if "cpu" in [h.lower() for h in kwargs.get("hardware") or []]:
        return None
    content = _config_content(model)
    versions = [metadata.version(p) for p in ("torch", "transformers", "peft")]
    blob = json.dumps([TRACE_VERSION, versions, content, DATA.read_text(), method, kwargs], sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _path(key: str) -> Path:
    from peftbench.models.catalogue import cache_dir

    return cache_dir() / "estimates" / f"answer-{key}.json"


def front_load(model: str, method: str, kwargs: dict[str, Any]) -> dict[str, Any] | None:
    key = _key(model, method, kwargs)
    if key is None or not _path(key).is_file():
        return None
    try:
        return json.loads(_path(key).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def front_store(model: str, method: str, kwargs: dict[str, Any], answer: dict[str, Any]) -> None:
    key = _key(model, method, kwargs)
    if key is None:
        return
    path = _path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(answer))
    tmp.replace(path)


# ---- shape fits ----------------------------------------------------------------------------------------
@cache
def code_hash() -> str:
    """Hash of the code a trace depends on (estimator, methods, model loading): a change voids the fits."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for package in ("estimate", "methods", "models"):
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def fit_key(model: str, method: str, kwargs: dict[str, Any], device_kind: str) -> str:
    """Everything a trace depends on except the batch size and sequence length. Library versions count
    by major.minor: the traced memory of one op sequence does not change in patch releases."""
    from peftbench.estimate.core import TRACE_VERSION

    versions = [".".join(metadata.version(p).split(".")[:2]) for p in ("torch", "transformers", "peft")]
    settings = {k: kwargs.get(k) for k in _FIT_SETTINGS}
    settings["overrides"] = settings["overrides"] or {}
    blob = json.dumps([TRACE_VERSION, versions, code_hash(), _config_content(model), method, settings,
                       device_kind], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@cache
def shipped_fits() -> dict[str, Any]:
    if not SHIPPED_FITS.is_file():
        return {}
    with gzip.open(SHIPPED_FITS, "rt") as f:
        return json.load(f)


def load_fit(model: str, method: str, kwargs: dict[str, Any], device_kind: str) -> dict[str, Any] | None:
    """The shipped fit for this setting, or None (not shipped, or made by other code or libraries)."""
    return shipped_fits().get("fits", {}).get(fit_key(model, method, kwargs, device_kind))


def shipped_methods() -> list[str] | None:
    """The method registry's names when the fits were shipped by this code (so `--method all` need not
    import the registry, which imports torch); None otherwise."""
    store = shipped_fits()
    return store.get("methods") if store.get("code_hash") == code_hash() else None
