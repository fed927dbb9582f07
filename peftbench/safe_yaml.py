"""The YAML reader for everything a user types or writes: suite files and `key=value` override values.

PyYAML's `safe_load` runs no code, but it still trusts the document's shape:

- aliases expand: a 400-byte value of nested `&a [*b, *b, ...]` lists becomes billions of items once any
  code walks or prints it (minutes and gigabytes), so anchors and aliases are refused — a suite has no
  use for them;
- a repeated key silently keeps the last value, so a suite saying `methods:` twice runs what the reader
  did not look at: refused;
- nesting recurses in the composer, and thousands of `[` end in a RecursionError: depth is bounded, and
  so is the document's size (checked before parsing).

Numbers follow YAML 1.2 as well as 1.1: PyYAML's 1.1 rules read `1e-4` and `5E-4` (no dot, or no sign in
the exponent) as strings, which every numeric key then refused. A scientific literal whose mantissa has no
dot and whose exponent is not negative (`1e3`) is a whole number and is read as an int, so integer keys
(`train.max_steps=1e3`) accept it, up to the int64 range (no count is larger; past it, an int could exceed
what a float holds); any other (`1e-4`, `2.5e3`, `1e23`) is a float.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from peftbench.errors import shown

MAX_DEPTH = 32  # nested collections; a suite needs 6 (suite > tasks > task > data > files > path)
MAX_SUITE_BYTES = 1 << 20  # the largest shipped suite is ~4 KB
MAX_VALUE_BYTES = 1 << 16  # one override value
INT64_MAX = 2**63 - 1

SCIENTIFIC_TAG = "tag:peftbench,2024:scientific"
SCIENTIFIC = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


class Refused(Exception):
    """A document the reader will not load; `line` is 1-based where the problem has a place."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.line = reason, line


class _Loader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise Refused(f"YAML aliases (*{event.anchor}) are not allowed; write the value out",
                          event.start_mark.line + 1)  # type: ignore[union-attr]  # a parsed event has its mark
        if getattr(event, "anchor", None) is not None:
            raise Refused(f"YAML anchors (&{event.anchor}) are not allowed; write the value out",
                          event.start_mark.line + 1)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise Refused(f"nested more than {MAX_DEPTH} levels deep", event.start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # a collection as a key is refused by PyYAML itself (unhashable)
            key = self.construct_object(key_node)
            if key in seen:
                raise Refused(f"duplicate key {shown(key)} (the second would silently replace the first)",
                              key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _construct_scientific(loader: _Loader, node: yaml.ScalarNode) -> int | float:
    text = loader.construct_scalar(node).replace("_", "")
    mantissa, _, exponent = text.lower().partition("e")
    if "." not in mantissa and 0 <= int(exponent) <= 18 and abs(int(mantissa) * 10 ** int(exponent)) <= INT64_MAX:
        return int(mantissa) * 10 ** int(exponent)
    return float(text)


_Loader.add_implicit_resolver(SCIENTIFIC_TAG, SCIENTIFIC, list("-+0123456789."))
_Loader.add_constructor(SCIENTIFIC_TAG, _construct_scientific)


def load(text: str, max_bytes: int = MAX_SUITE_BYTES) -> Any:
    """The document's value. Malformed YAML raises yaml.YAMLError as `yaml.safe_load` does (callers already
    word it); everything this module refuses, and values Python cannot hold (a 5000-digit integer), raise
    Refused."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise Refused(f"{size} bytes; at most {max_bytes} are read")
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except (ValueError, OverflowError) as exc:  # int("9" * 5000): Python reads at most 4300 digits
        first = (str(exc).split(";")[0].splitlines() or [type(exc).__name__])[0][:100]
        raise Refused(f"a value cannot be read ({first})", _line(loader)) from None
    finally:
        loader.dispose()


def _line(loader: _Loader) -> int:
    return loader.get_mark().line + 1  # where the reader stopped: at, or just past, the value
