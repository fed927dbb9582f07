"""The one cache module: where peftbench keeps what it computed, how entries are keyed and written.

Every cache is keyed by what its answers mean (`meaning_key`): the version constants bumped when a change
alters the answers (`peftbench.versions`), the data they depend on and the inputs — never by the bytes of
the source that computed them (lm-eval keys tasks by a `VERSION`), and never by the installed library
versions. A transformers or torch release does not void a shipped answer; stores record the versions they
were computed with (`computed_with`, scikit-learn's stamp-and-warn), and whether a release changed what
the estimator traces is the canaries' job (`peftbench doctor`, `tests/test_canaries.py`), which say
"still valid" or "drifted by X%: rebuild".
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

ENV_VAR = "PEFTBENCH_CACHE"


def cache_root() -> Path:
    """`$PEFTBENCH_CACHE`, else `~/.cache/peftbench`: per user, outside any project folder."""
    return Path(os.environ.get(ENV_VAR) or Path.home() / ".cache" / "peftbench")


def key_of(*parts: Any, length: int = 32) -> str:
    """A stable hex key for JSON-able parts (dict order does not matter)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def write_json_atomic(path: Path, obj: Any, **dump_kwargs: Any) -> None:
    """Write JSON so that a concurrent reader sees the old file or the new one, never half of one: a
    temp file named per process in the same folder, then `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(obj, **dump_kwargs))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: Path) -> Any | None:
    """The file's JSON, or None when it is missing or damaged: a cache miss is only a slower answer."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


LIBRARIES = ("torch", "transformers", "peft")  # what a traced answer is computed with


@cache
def computed_with() -> dict[str, str]:
    """torch, transformers and peft versions from package metadata (imports nothing): recorded beside a
    store's answers so that a reader (and `peftbench doctor`) can say what they were traced with."""
    versions = {}
    for package in LIBRARIES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return versions


MEANINGS = ("estimates", "methods", "recommender", "report")


@cache
def meaning_key(*what: str) -> str:
    """What cached answers of these kinds depend on, as one short key: `estimates` (the estimator's version and
    the hardware catalogue's data), `methods` (the registry's declarations), `recommender` (the quality model),
    `report` (what a report page derives). Library versions are deliberately not part of it (module doc)."""
    from peftbench import versions

    unknown = set(what) - set(MEANINGS)
    if unknown:
        raise ValueError(f"unknown cache meaning(s) {sorted(unknown)}; known: {MEANINGS}")
    parts: list[Any] = []
    if "estimates" in what:
        from peftbench.hardware import DATA

        parts += [versions.ESTIMATOR_VERSION, hashlib.sha256(DATA.read_bytes()).hexdigest()[:16]]
    if "methods" in what:
        parts.append(versions.METHODS_VERSION)
    if "recommender" in what:
        parts.append(versions.RECOMMENDER_VERSION)
    if "report" in what:
        parts.append(versions.REPORT_VERSION)
    return key_of(*parts, length=12)
