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


def check_output_file(path: Path, flag: str = "-o") -> Path:
    """A file the command may create or replace: its folder exists and is writable, and it is no folder."""
    path = Path(path).expanduser()
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UserError(f"{flag} {shown(str(path))} is a folder; name a file")
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise UserError(f"{flag} {shown(str(path))}: folder {shown(str(parent))} {what}")
    if not _writable(parent) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"{flag} {shown(str(path))}: not writable here; name a file in a folder you can write to")
    return path


def check_output_dir(path: Path, flag: str = "-o") -> Path:
    """A folder the command may create (with its parents) and write into."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {shown(str(path))} is a file; name a folder")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not _writable(existing):
        raise UserError(f"{flag} {shown(str(path))}: {shown(str(existing))} is not a writable folder")
    return path


def check_input_dir(path: Path | None, flag: str) -> Path | None:
    """A folder the command reads (None: not given)."""
    if path is not None and not Path(path).expanduser().is_dir():
        raise UserError(f"{flag} {shown(str(path))}: no such folder")
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
