"""Reuters-21578 acquisitions vs crude-oil sample shipped in the Debian ``r-cran-tm`` package (tiny)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter

from .common import Extract, Fetcher, Row, clean_text, dedupe, eval_groups, row_id, split_rows

PACKAGE, VERSION = "r-cran-tm", "0.7-11-1"
TEXTS = "usr/lib/R/site-library/tm/texts"
LABELS = ("acq", "crude")
EVAL_FRAC = 0.3


def _parse(xml: bytes, label: str) -> Row | None:
    root = ET.fromstring(xml)
    title = clean_text(root.findtext("TEXT/TITLE") or "")
    body = clean_text(root.findtext("TEXT/BODY") or "")
    if body.endswith("Reuter"):
        body = body[: -len("Reuter")].rstrip()
    if not body:
        return None
    return {
        "id": f"reuters/{root.get('NEWID')}",
        "text": f"{title}\n{body}" if title else body,
        "label": label,
        "lewis_split": root.get("LEWISSPLIT", ""),
    }


def build(fetch: Fetcher) -> list[Extract]:
    """Title + body -> acq/crude; 30% of each class (by stable hash) held out."""
    root = fetch.deb(PACKAGE, VERSION) / TEXTS
    rows: list[Row] = []
    raw = 0
    for label in LABELS:
        for path in sorted((root / label).glob("*.xml")):
            raw += 1
            row = _parse(path.read_bytes(), label)
            if row is not None:
                rows.append(row)
    rows = dedupe(rows, lambda r: str(r["text"]))
    strata = {str(r["id"]): str(r["label"]) for r in rows}
    eval_set = eval_groups(strata, EVAL_FRAC, strata)
    labels = dict(sorted(Counter(str(r["label"]) for r in rows).items()))
    return [
        Extract(
            "reuters_acq_crude", *split_rows(rows, row_id, eval_set), {"raw": raw, "clean": len(rows), "labels": labels}
        )
    ]
