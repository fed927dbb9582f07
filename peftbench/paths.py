"""Names that become folder names, and files the user names for output: checked before anything is written.

A suite's name is the folder its runs go to (`<results>/<name>/`) and the name of its report page, so it
must be a plain identifier: nothing that could climb out of the results or reports folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from peftbench.errors import UserError, shown

NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
RESERVED = ("reference", "published")  # result folders shipped with peftbench


def check_name(name: object, what: str = "suite name") -> str:
    """`name` if it is a safe folder name (letters, digits, `_`, `-`; not a reserved folder), else UserError."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or name in RESERVED:
        raise UserError(f"{what} {shown(name)} is not valid: use letters, digits, '_' and '-' only "
                        f"(not empty, not {' or '.join(RESERVED)})")
    return name


def is_file(path: Path | str) -> bool:
    """`Path.is_file()` for a path the user typed: False, not an exception, for a name too long for the file
    system or one holding a NUL byte (pathlib lets ENAMETOOLONG through)."""
    try:
        return Path(path).expanduser().is_file()
    except (OSError, ValueError):
        return False


def is_dir(path: Path | str) -> bool:
    try:
        return Path(path).expanduser().is_dir()
    except (OSError, ValueError):
        return False


def exists(path: Path | str) -> bool:
    try:
        return Path(path).expanduser().exists()
    except (OSError, ValueError):
        return False


def check_output_file(path: Path, flag: str = "-o") -> Path:
    """A file the command may create or replace: its folder exists and is writable, and it is no folder."""
    path = check_names(Path(path).expanduser(), flag)
    parent = path.parent if str(path.parent) else Path(".")
    if is_dir(path):
        raise UserError(f"{flag} {shown(str(path))} is a folder; name a file")
    if not is_dir(parent):
        what = "is not a folder" if exists(parent) else "does not exist"
        raise UserError(f"{flag} {shown(str(path))}: folder {shown(str(parent))} {what}")
    if not _writable(parent) or (exists(path) and not os.access(path, os.W_OK)):
        raise UserError(f"{flag} {shown(str(path))}: not writable here; name a file in a folder you can write to")
    return path


def check_output_dir(path: Path, flag: str = "-o") -> Path:
    """A folder the command may create (with its parents) and write into."""
    path = check_names(Path(path).expanduser(), flag)
    if exists(path) and not is_dir(path):
        raise UserError(f"{flag} {shown(str(path))} is a file; name a folder")
    existing = path
    while not exists(existing) and existing != existing.parent:
        existing = existing.parent
    if not is_dir(existing) or not _writable(existing):
        raise UserError(f"{flag} {shown(str(path))}: {shown(str(existing))} is not a writable folder")
    return path


def check_results_dir(path: Path, flag: str = "--results") -> Path:
    """A results root `run` may create and write into: a folder (or a name that can become one) in a writable
    place, and outside peftbench's own shipped folders — its package, suites, reference results and published
    evidence, which an installed package holds as package data and which a user's runs must never mix into
    (a `smoke/` folder of fresh runs inside the reference results would be read as reference runs).
    Checked before anything is written."""
    if not str(path).strip():
        raise UserError(f"{flag} is empty; name a folder for the results")
    path = check_output_dir(Path(path), flag)
    try:
        resolved = path.expanduser().resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise UserError(f"{flag} {shown(str(path))}: cannot be resolved to a folder") from None
    for folder in shipped_folders():
        if resolved == folder or folder in resolved.parents:
            raise UserError(f"{flag} {shown(str(path))} is inside peftbench's own shipped folder {folder}, which "
                            "holds the package's data: write your runs elsewhere")
    return path


def suites_dir() -> Path:
    """The shipped suites' folder (in a source checkout: `suites/`)."""
    return shipped_dir("peftbench.suite_files", "suites")


def reference_results_dir() -> Path:
    """The reference results shipped with the package (in a source checkout: `results/reference`)."""
    return shipped_dir("peftbench.reference_results", "results/reference")


def published_dir() -> Path:
    """The folder holding the published corpus files (in a source checkout: `results/published`)."""
    return shipped_dir("peftbench.published_results", "results/published")


# The shipped folders are named here, not in the modules that read them (suites, results, the corpus), so that
# this module imports nothing of peftbench above it: those modules import it for their name checks.
def shipped_folders() -> list[Path]:
    """The folders peftbench ships (resolved): the package itself and its package-data folders, which a source
    checkout keeps beside the package."""
    package = Path(__file__).resolve().parent
    return [package, *(folder.resolve() for folder in (suites_dir(), reference_results_dir(), published_dir()))]


def check_input_dir(path: Path | None, flag: str) -> Path | None:
    """A folder the command reads (None: not given)."""
    if path is not None and not is_dir(path):
        raise UserError(f"{flag} {shown(str(path))}: no such folder")
    return path


NAME_MAX = 255  # bytes in one file name on every common file system


def check_names(path: Path, flag: str) -> Path:
    """`path` if each name in it fits a file system (NAME_MAX bytes) and holds no NUL: found before any work,
    not when the file is finally written."""
    for part in path.parts:
        if "\x00" in part or len(part.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise UserError(f"{flag} {shown(str(path))}: a name in it is longer than {NAME_MAX} bytes or holds a NUL")
    return path


def _writable(folder: Path) -> bool:
    """Whether a file can be created in `folder`. `os.access` alone says yes to root for /proc or a read-only
    mount, so a probe file is created and removed at once."""
    import tempfile

    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        handle, probe = tempfile.mkstemp(prefix=".peftbench-probe-", dir=folder)
    except OSError:
        return False
    os.close(handle)
    os.unlink(probe)
    return True


def shipped_dir(package: str, checkout_folder: str) -> Path:
    """A folder shipped as package data (`package`, mapped in pyproject.toml), or, when peftbench runs from a
    source checkout, that checkout's own folder (`checkout_folder`, relative to the repository root).

    The checkout comes first so that `PYTHONPATH=. python -m peftbench` in a clone reads and writes the
    clone's folders, whatever editable install (possibly of another clone) the interpreter also has."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / checkout_folder).is_dir():
        return checkout / checkout_folder
    from importlib.resources import files

    return Path(str(files(package)))
