"""JSON caches for the fitted quality model, method metadata and estimates: never pickle.

Two layers. The user cache (`$PEFTBENCH_CACHE/recommend/`) is written whenever something is computed.
The shipped copy (`peftbench/recommend/data/`, written by `benchmarks/recommender_track_record.py
--ship`) lets a fresh install answer in under 3 s: fitting imports scikit-learn and estimating imports
torch, ~4-5 s each on the benchmark CPU. Entries are keyed by what they mean (`meaning_key`: the
versions in `peftbench.versions`, the hardware catalogue's data, library versions; the results files'
hash for the fitted model), never by source bytes, so a stale entry is never used and an edit that
changes no answer voids nothing.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from peftbench.cache import cache_root, key_of, library_versions, write_json_atomic
from peftbench.cache import read_json as _read_file

SHIPPED_DIR = Path(__file__).resolve().parent / "data"
__all__ = ["SHIPPED_DIR", "key_of", "meaning_key", "read_json", "user_dir", "write_json"]


def user_dir() -> Path:
    return cache_root() / "recommend"


def meaning_key(*what: str) -> str:
    """What cached answers of these kinds depend on: `estimates` (the estimator's version and the hardware
    catalogue's data), `methods` (the registry's declarations), `recommender` (the quality model)."""
    from peftbench import versions

    parts: list[Any] = []
    if "estimates" in what:
        from peftbench.hardware import DATA

        parts += [versions.ESTIMATOR_VERSION, library_versions(minor_only=True), DATA.read_text()]
    if "methods" in what:
        parts.append(versions.METHODS_VERSION)
    if "recommender" in what:
        parts.append(versions.RECOMMENDER_VERSION)
    return key_of(*parts, length=12)


def read_json(name: str) -> dict[str, Any]:
    """The user cache's entries over the shipped ones (the user's are newer or more specific)."""
    merged: dict[str, Any] = {}
    for folder in (SHIPPED_DIR, user_dir()):
        entries = _read_file(folder / name)
        if isinstance(entries, dict):  # a damaged cache is only a slower call, never an error
            merged.update(entries)
    return merged


def write_json(name: str, entries: dict[str, Any], folder: Path | None = None) -> None:
    path = (folder or user_dir()) / name
    current = _read_file(path)
    current = current if isinstance(current, dict) else {}
    current.update(entries)
    # A read-only home: the answer is the same, only the next call is slower.
    with contextlib.suppress(OSError):
        write_json_atomic(path, current, sort_keys=True, separators=(",", ":"))
