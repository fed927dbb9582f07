"""Answers for repeated `estimate` calls without importing torch, transformers or peft (~5-15 s here).

Keyed by the call's arguments, the preset / config file's contents, the hardware catalogue and the
installed library versions (read from package metadata, which imports nothing). Profiles measured on
this machine (`cpu`) are not cached here: their figures depend on the thread count.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import Any


def _key(model: str, method: str, kwargs: dict[str, Any]) -> str | None:
    from peftbench.estimate.configs import preset_for
    from peftbench.estimate.core import TRACE_VERSION
    from peftbench.hardware import DATA

    if "cpu" in [h.lower() for h in kwargs.get("hardware") or []]:
        return None
    preset = preset_for(model)
    path = preset / "config.json" if preset else Path(model).expanduser()
    if path.is_dir():
        path = path / "config.json"
    content = path.read_text() if path.is_file() else model  # packaged / hub: the name stands for the config
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
