"""MkDocs hook: the CLI reference, generated at build time from `peftbench.cli.build_parser()`.

`docs/reference/cli.md` holds the marker line `<!-- cli-reference -->`; this hook replaces it with one section
per command — its help line, its usage and a table of its arguments — read from the same argparse parsers
that `peftbench` itself runs. The page therefore cannot drift from the code: a new command, flag, default or
help text shows up at the next `mkdocs build`. A page without the marker is left alone; a marker that
cannot be filled fails the build (mkdocs reports the exception).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

MARKER = "<!-- cli-reference -->"
WIDTH = "80"  # argparse wraps usage to $COLUMNS; fixed so that the page does not depend on the terminal


def on_page_markdown(markdown: str, page, config, files) -> str:  # MkDocs calls it with these keywords
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render())


def render() -> str:
    parser = _parser()
    commands = _subcommands(parser)
    out = ["| command | what it does |", "| --- | --- |"]
    out += [f"| [`peftbench {name}`](#peftbench-{name}) | {_cell(help_ or '')} |" for name, help_, _ in commands]
    for name, help_, sub in commands:
        out += ["", f"## `peftbench {name}` {{#peftbench-{name}}}", "", _escape(help_ or "")]
        if sub.description and sub.description != help_:
            out += ["", _escape(sub.description)]
        out += ["", "```text", _usage(sub), "```"]
        rows = [_row(sub, action) for action in sub._actions if not isinstance(action, argparse._HelpAction)]
        if rows:
            out += ["", "| argument | default | meaning |", "| --- | --- | --- |", *rows]
    return "\n".join(out) + "\n"


def _parser() -> argparse.ArgumentParser:
    root = Path(__file__).resolve().parents[2]  # a clean clone builds without installing peftbench first
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from peftbench.cli import build_parser

    return build_parser()


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, help line, parser) of every command, in the order `peftbench --help` lists them."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in action._choices_actions}
    return [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]


def _usage(sub: argparse.ArgumentParser) -> str:
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        return sub.format_usage().strip()
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def _row(sub: argparse.ArgumentParser, action: argparse.Action) -> str:
    if action.option_strings:
        name = ", ".join(action.option_strings)
        if action.nargs != 0:
            name += f" {action.metavar or action.dest.upper()}"
    else:
        name = action.metavar if isinstance(action.metavar, str) else action.dest
        if action.nargs in ("*", "+"):
            name += " ..."
    meaning = _cell(sub._get_formatter()._expand_help(action)) if action.help else ""
    if action.choices:
        meaning += ("; one of: " if meaning else "One of: ") + ", ".join(f"`{c}`" for c in action.choices)
    # argparse marks a `nargs="*"` positional required, though it takes zero values too.
    if action.required and action.nargs not in ("*", "?"):
        meaning = "**Required.** " + meaning
    default = action.default
    shown = "" if default in (None, False, argparse.SUPPRESS) or action.nargs in ("*", "+") else f"`{default}`"
    return f"| `{_code(name)}` | {shown} | {meaning} |"


def _escape(text: str) -> str:
    """Plain help text as Markdown: `*` and `_` would start emphasis, `<` a tag."""
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_").replace("<", "&lt;")


def _cell(text: str) -> str:
    return _escape(" ".join(str(text).split())).replace("|", "\\|")


def _code(text: str) -> str:
    """Text inside a code span of a table cell: taken literally (the table extension does not split cells on a
    pipe inside a code span)."""
    return " ".join(str(text).split())
