"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class UserError(Exception):
    """Bad input: unknown names, malformed files, invalid values. Never a bug in peftbench."""


class MethodNotApplicable(Exception):
    """A method cannot run on this model or task; the run is recorded as `skipped` with this reason."""


def shown(value: Any, limit: int = 80) -> str:
    """A user's value as an error message may echo it: repr-like, so CR/LF and control characters appear
    escaped (a value can neither break the one-line message nor rewrite the terminal), and cut to `limit`.

    Shortened before it is rendered, not after: the repr of a list of a billion items, or of a long text,
    costs what the whole value costs, and an int of more than 4300 digits has no repr at all."""
    text = _short_repr(value, limit)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _short_repr(value: Any, limit: int) -> str:
    import reprlib

    if isinstance(value, str):
        return repr(value[:limit])  # the cut below drops the closing quote, as for any long value
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * limit:
        return f"<an integer of about {int(value.bit_length() * 0.30103) + 1} digits>"
    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxtuple, short.maxdict, short.maxset = 3, 8, 8, 8, 8
    short.maxstring = short.maxother = short.maxlong = limit
    return short.repr(value)


def one_line(message: str) -> str:
    """`message` with every control character escaped: the last guard of the one-line error contract."""
    return "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
                   for ch in message)


def did_you_mean(value: str, valid: Iterable[str]) -> str:
    """`"; did you mean 'lora'?"` naming the valid names closest to a mistyped `value` (compared without case),
    or "" when none is close: appended to an "unknown ..." message, it turns a typo into its fix."""
    import difflib

    by_lower = {name.lower(): name for name in valid}
    close = difflib.get_close_matches(str(value).lower(), list(by_lower), n=3, cutoff=0.6)
    if not close:
        return ""
    names = [shown(by_lower[name]) for name in close]
    return "; did you mean " + (f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]) + "?"
