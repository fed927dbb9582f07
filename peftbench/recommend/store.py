"""JSON caches for the fitted quality model, method metadata and estimates: never pickle.

Two layers. The user cache (`$PEFTBENCH_CACHE/recommend/`) is written whenever something is computed.
The shipped copy (`peftbench/recommend/data/`, written by `benchmarks/recommender_track_record.py
--ship`) lets a fresh install answer in under 3 s: fitting imports scikit-learn and estimating imports
torch, ~4-5 s each on the benchmark CPU. Entries are keyed by what they mean (`peftbench.cache.meaning_key`:
the versions in `peftbench.versions`, the hardware catalogue's data; the results files' hash for the fitted
model), never by source bytes or library versions, so an edit that changes no answer voids nothing and a
library release voids nothing either (the canaries say whether it changed a traced answer).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from peftbench.cache import cache_root, key_of, meaning_key, write_json_atomic
from peftbench.cache import read_json as _read_file

SHIPPED_DIR = Path(__file__).resolve().parent / "data"
__all__ = ["SHIPPED_DIR", "key_of", "meaning_key", "read_json", "user_dir", "write_json"]


def user_dir() -> Path:
    return cache_root() / "recommend"


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
