"""A small JSON store of estimator and recommender answers, kept beside the reports.

A cold estimate traces a model (~3-4 s each on this CPU), and a suite needs one per task x method, so a
fresh clone could not regenerate every report in 30 s. The answers are therefore stored, keyed by their
inputs and by what the code computing them means (`peftbench.cache.meaning_key`), in
`reports/derived-cache.json`; a change of results, a version bump or a change of the hardware catalogue
misses the stored answer and recomputes.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from peftbench.cache import meaning_key, write_json_atomic

CACHE_FILE = "derived-cache.json"


def environment() -> str:
    """What, besides a call's own arguments, changes an estimate or a recommendation shown on a page: the
    versions of what the estimator, the method registry, the recommender and the report compute and the
    hardware catalogue's data (`peftbench.cache.meaning_key`). Not the source bytes, not library versions."""
    return meaning_key("estimates", "methods", "recommender", "report")


class DerivedCache:
    """Answers by key; `save` keeps only the keys used since loading when `prune` is set."""

    def __init__(self, path: Path | None, use: bool = True) -> None:
        self.path = path
        self.entries: dict[str, Any] = {}
        self.used: set[str] = set()
        if path is not None and use and path.is_file():
            try:
                self.entries = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                self.entries = {}

    @staticmethod
    def key(*parts: Any) -> str:
        blob = json.dumps([parts, environment()], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def get(self, key: str) -> Any | None:
        if key in self.entries:
            self.used.add(key)
        return self.entries.get(key)

    def put(self, key: str, value: Any) -> None:
        self.entries[key] = value
        self.used.add(key)

    def save(self, prune: bool = False) -> None:
        if self.path is None:
            return
        keep = {k: v for k, v in self.entries.items() if not prune or k in self.used}
        write_json_atomic(self.path, keep, sort_keys=True, indent=1)


class Deadline:
    """A shared time budget for slow optional work; `None` seconds means no limit."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.end = None if seconds is None else time.perf_counter() + seconds

    def remaining(self) -> float | None:
        return None if self.end is None else self.end - time.perf_counter()
