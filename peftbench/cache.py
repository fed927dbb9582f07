"""The one cache module: where peftbench keeps what it computed, how entries are keyed and written.

Every cache is keyed by what its answers mean (`meaning_key`): the version constants bumped when a change
alters the answers (`peftbench.versions`), the data they depend on and the inputs — never by the bytes of
the source that computed them (lm-eval keys tasks by a `VERSION`), and never by the installed library
versions. A transformers or torch release does not void a shipped answer; stores record the versions they
were computed with (`computed_with`, scikit-learn's stamp-and-warn), and whether a release changed what
the estimator traces is the canaries' job (`peftbench doctor`, the canary tests in `tests/test_shape_fit.py`), which say
"still valid" or "drifted by X%: rebuild".
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

CACHE_ENV_VAR = "PEFTBENCH_CACHE"


def cache_root() -> Path:
    """`$PEFTBENCH_CACHE`, else `~/.cache/peftbench`: per user, outside any project folder."""
    return Path(os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "peftbench")


def key_of(*parts: Any, length: int = 32) -> str:
    """A stable hex key for JSON-able parts (dict order does not matter)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


# Set once this process has said the cache is unusable, so that the processes it starts (run workers, trace
# workers) inherit the knowledge and stay quiet: one warning line per command, not one per process.
_WARNED_ENV = "PEFTBENCH_CACHE_WARNED"
_writable_roots: dict[str, bool] = {}


def cache_writable() -> bool:
    """Whether entries can be written under `cache_root()`, probed once per process. A cache can only make
    answers faster, so an unusable one (`$PEFTBENCH_CACHE` naming a file, a read-only folder) is said once on
    stderr and every write is skipped; reads still use what the folder holds."""
    root = cache_root()
    key = os.path.abspath(root)
    if key not in _writable_roots:
        problem = _unwritable(root)
        _writable_roots[key] = problem is None
        if problem:
            warn_cache(problem)
    return _writable_roots[key]


def _unwritable(root: Path) -> str | None:
    """Why no file can be created in `root` (or in the nearest folder above it that exists, where it does not
    exist yet), or None. A probe file, since `os.access` says yes to root on a read-only mount."""
    folder = root
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is not a folder" if folder != root else "is not a folder"
    try:
        handle, probe = tempfile.mkstemp(prefix=".peftbench-probe-", dir=folder)
    except OSError as exc:
        return f"is not writable ({exc.strerror or exc})"
    os.close(handle)
    os.unlink(probe)
    return None


def warn_cache(problem: str, consequence: str = "") -> None:
    """One stderr line per command (this process and those it starts) saying what of the cache is not used."""
    root = os.path.abspath(cache_root())
    if os.environ.get(_WARNED_ENV) == root:
        return
    os.environ[_WARNED_ENV] = root
    consequence = consequence or (f"going on without it (same answers, only slower; ${CACHE_ENV_VAR} names another "
                                  "folder)")
    sys.stderr.write(f"peftbench: warning: cache {root} {problem}: {consequence}\n")


def _in_cache(path: Path) -> bool:
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(cache_root()))


def write_json_atomic(path: Path, obj: Any, **dump_kwargs: Any) -> None:
    """Write JSON so that a concurrent reader sees the old file or the new one, never half of one: a
    temp file named per process in the same folder, then `os.replace`. A file under the cache root is a cache
    entry: where it cannot be written the next call is only slower, so that is said once, not raised."""
    path = Path(path)
    in_cache = _in_cache(path)
    if in_cache and not cache_writable():
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(obj, **dump_kwargs))
        os.replace(tmp, path)
    except OSError as exc:
        if not in_cache:
            raise
        warn_cache(f"could not be written ({exc.strerror or exc})")
    finally:
        # The temp file may not exist; on a read-only mount or under a file even removing nothing fails.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def read_json(path: Path) -> Any | None:
    """The file's JSON, or None when it is missing or damaged: a cache miss is only a slower answer."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError):
        return None


def cache_folder(*parts: str) -> Path:
    """`cache_root()/parts` for what needs a disk, not only a faster answer (a converted model, a Ray run's
    files): where the cache is unusable and the folder is not there already, a temporary folder that this
    process removes when it exits."""
    folder = cache_root().joinpath(*parts)
    if folder.is_dir() or cache_writable():
        return folder
    return _scratch_root().joinpath(*parts)


@cache
def _scratch_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="peftbench-cache-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


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
# `peftbench.hardware.DATA`, named by path: the hardware package caches this CPU's profile through this module.
_HARDWARE_DATA = Path(__file__).parent / "hardware" / "profiles.json"


@cache
def meaning_key(*what: str) -> str:
    """What cached answers of these kinds depend on, as one short key: `estimates` (the estimator's version and
    the hardware catalogue's data), `methods` (the method declarations), `recommender` (the quality model),
    `report` (what a report page derives). Library versions are deliberately not part of it (module doc)."""
    from peftbench import versions

    unknown = set(what) - set(MEANINGS)
    if unknown:
        raise ValueError(f"unknown cache meaning(s) {sorted(unknown)}; known: {MEANINGS}")
    parts: list[Any] = []
    if "estimates" in what:
        parts += [versions.ESTIMATOR_VERSION, hashlib.sha256(_HARDWARE_DATA.read_bytes()).hexdigest()[:16]]
    if "methods" in what:
        parts.append(versions.METHODS_VERSION)
    if "recommender" in what:
        parts.append(versions.RECOMMENDER_VERSION)
    if "report" in what:
        parts.append(versions.REPORT_VERSION)
    return key_of(*parts, length=12)
