"""The one cache module: where peftbench keeps what it computed, how entries are keyed and written.

Caches are keyed by what their answers mean — a version constant bumped when a change alters the
answers (`peftbench.versions`), the library versions and the inputs — never by the bytes of the source
that computed them (lm-eval keys tasks by a `VERSION`; scikit-learn stamps saved state with one). Editing
a comment must not void a cache; a change that alters numbers bumps the version beside the code.
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


@cache
def library_versions(minor_only: bool = False) -> tuple[str, ...]:
    """torch, transformers and peft versions from package metadata (imports nothing). `minor_only`: by
    major.minor, for answers that do not change in patch releases (the traced memory of an op sequence)."""
    versions = []
    for package in ("torch", "transformers", "peft"):
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            version = "absent"
        versions.append(".".join(version.split(".")[:2]) if minor_only else version)
    return tuple(versions)
