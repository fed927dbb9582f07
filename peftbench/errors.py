"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input: unknown names, malformed files, invalid values. Never a bug in peftbench."""


class MethodNotApplicable(Exception):
    """A method cannot run on this model or task; the run is recorded as `skipped` with this reason."""
