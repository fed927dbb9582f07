"""JSON caches for the fitted quality model, method metadata and estimates: never pickle.

Two layers. The user cache (`$PEFTBENCH_CACHE/recommend/`) is written whenever something is computed.
The shipped copy (`peftbench/recommend/data/`, written by `benchmarks/recommender_track_record.py
--ship`) lets a fresh clone answer in under 3 s: fitting imports scikit-learn and estimating imports
torch, ~4-5 s each on the benchmark CPU. Entries are keyed by what they depend on (the results files'
hash, the estimator's source hash), so a stale entry is never used, only recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

SHIPPED_DIR = Path(__file__).resolve().parent / "data"
FORMAT = 1  # bump when the fitted model's JSON layout or features change


def user_dir() -> Path:
    root = Path(os.environ.get("PEFTBENCH_CACHE", Path.home() / ".cache" / "peftbench"))
    return root / "recommend"


def read_json(name: str) -> dict[str, Any]:
    """The user cache's entries over the shipped ones (the user's are newer or more specific)."""
    merged: dict[str, Any] = {}
    for folder in (SHIPPED_DIR, user_dir()):
        path = folder / name
        if path.is_file():
            try:
                merged.update(json.loads(path.read_text()))
            except (json.JSONDecodeError, OSError):
                continue  # a damaged cache is only a slower call, never an error
    return merged


def write_json(name: str, entries: dict[str, Any], folder: Path | None = None) -> None:
    folder = folder or user_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        current = json.loads(path.read_text()) if path.is_file() else {}
        current.update(entries)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(current, sort_keys=True, separators=(",", ":")))
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old or the new file, never half
    except OSError:
        pass  # read-only home: the answer is the same, only the next call is slower


def source_hash(*packages: str) -> str:
    """Hash of packages' files (code and data): an estimator change invalidates cached estimates."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for package in packages:
        for path in sorted((root / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(root)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def key_of(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]
