"""A small JSON store of estimator and recommender answers, kept beside the reports.

A cold estimate traces a model (~3-4 s each on this CPU), and a suite needs one per task x method, so a
fresh clone could not regenerate every report in 30 s. The answers are therefore stored, keyed by their
inputs and by the code that computes them, in `reports/derived-cache.json`; a change of results, of the
estimator's or recommender's code, or of the hardware catalogue misses the stored answer and recomputes.
"""

from __future__ import annotations

import hashlib
import json
import time
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

CACHE_FILE = "derived-cache.json"
# The code whose answers are stored: a change to any of these files invalidates the stored answers.
SOURCES = ("estimate", "hardware", "recommend", "methods", "models")


@lru_cache(maxsize=1)
def environment() -> list[Any]:
    """What, besides a call's own arguments, changes an estimate or a recommendation.

    The source of the estimator, recommender and what they read (methods, model catalogue, hardware
    profiles) rather than library versions: a fresh clone with the same code hits the stored answers even
    where pip resolved a slightly different transformers, and any edit of that code recomputes.
    """
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for name in SOURCES:
        for path in sorted((package / name).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".json", ".yaml"):
                digest.update(path.relative_to(package).as_posix().encode())
                digest.update(path.read_bytes())
    try:
        torch = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch = None
    return [digest.hexdigest()[:16], torch]


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(keep, sort_keys=True, indent=1) + "\n")
        tmp.replace(self.path)


class Deadline:
    """A shared time budget for slow optional work; `None` seconds means no limit."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.end = None if seconds is None else time.perf_counter() + seconds

    def remaining(self) -> float | None:
        return None if self.end is None else self.end - time.perf_counter()
