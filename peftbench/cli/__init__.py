"""`peftbench` command line: parses arguments and dispatches to the module that owns each noun.

Each command lives in its own module exposing `register(subparsers)`, which adds a sub-parser whose
`func(args) -> int` does the work. Imports of heavy libraries stay inside those functions so that
`peftbench --help` and quick commands start fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from typing import NoReturn

from peftbench.errors import UserError, did_you_mean, one_line

# Module names under peftbench.cli, in the order `--help` lists them.
COMMANDS = ("run", "pilot", "info", "results", "estimate", "recommend", "report", "evidence", "doctor")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own errors: one line, exit 2
        sys.stderr.write(f"peftbench: error: {one_line(message)}\n")
        raise SystemExit(2)

    def _check_value(self, action: argparse.Action, value: object) -> None:
        """argparse's "invalid choice" (a command, --task-kind, --dtype...) also names the closest choices, as
        peftbench's own refusals do."""
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as exc:
            hint = did_you_mean(value, [str(c) for c in action.choices or ()]) if isinstance(value, str) else ""
            if not hint:
                raise
            raise argparse.ArgumentError(action, exc.message + hint) from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="peftbench", description="Benchmark, predict and recommend PEFT methods.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"peftbench.cli.{name}").register(subparsers)
    return parser


def _quiet_libraries() -> None:
    """Library deprecation notices and info logs say nothing a peftbench user can act on."""
    import os
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_VERBOSITY", "error")  # its retry warnings would bury the one error line
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*use_cache=True.*")


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        sys.stderr.write(f"peftbench: error: {one_line(str(exc))}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("peftbench: interrupted\n")
        return 130
    except BrokenPipeError:  # `peftbench results ... | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # A disk that fills mid-suite: every record written before is whole (the store truncates a partial
        # line), and the run whose record could not be written is run again by the resume.
        where = f" writing {exc.filename}" if exc.filename else ""
        sys.stderr.write(f"peftbench: error: no space left on the device{where} ({one_line(str(exc.strerror))}); "
                         "the runs recorded so far are kept: free some space and rerun the same command to "
                         "resume\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
