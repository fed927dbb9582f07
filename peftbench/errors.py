"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations

from typing import Any


class UserError(Exception):
    """Bad input: unknown names, malformed files, invalid values. Never a bug in peftbench."""


class MethodNotApplicable(Exception):
    """A method cannot run on this model or task; the run is recorded as `skipped` with this reason."""


def shown(value: Any, limit: int = 80) -> str:
    """A user's value as an error message may echo it: repr-like, so CR/LF and control characters appear
    escaped (a value can neither break the one-line message nor rewrite the terminal), and cut to `limit`."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def one_line(message: str) -> str:
    """`message` with every control character escaped: the last guard of the one-line error contract."""
    return "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
                   for ch in message)
