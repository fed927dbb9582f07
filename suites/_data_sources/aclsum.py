"""ACLSum (Takeshita et al., NAACL 2024) from ``aclsum`` 0.1.2 (MIT): paper abstract -> summary.

The upstream split is kept (train + val -> train, test -> eval); the package module is never imported
(it needs Python >= 3.11 and ``sienna``), the jsonl files are read from the wheel.
"""

from __future__ import annotations

import json
import re

from .common import Extract, Fetcher, Row, clean_text, dedupe, row_id, split_rows

PACKAGE, VERSION = "aclsum", "0.1.2"
SPLITS = {"train": "train", "val": "train", "test": "eval"}
ASPECTS = ("challenge", "approach", "outcome")


def detokenize(text: str) -> str:
    """Undo the PTB-style spacing of the sentence field ("word , word ( x )" -> "word, word (x)")."""
    text = re.sub(r"\s+([.,;:!?%)\]}])", r"\1", text)
    text = re.sub(r"([(\[{$])\s+", r"\1", text)
    text = re.sub(r"\s+(n't|'s|'re|'ve|'ll|'d|'m)\b", r"\1", text)
    text = re.sub(r"``\s*|\s*''", '"', text)
    return re.sub(r"\s+", " ", text).strip()


def _row(paper: dict[str, object], side: str) -> Row | None:
    sentences = paper["sentences"]
    summary = paper["summary"]
    assert isinstance(sentences, dict) and isinstance(summary, dict)
    abstract = detokenize(" ".join(sentences["abstract"]))
    target = " ".join(clean_text(str(summary[a])) for a in ASPECTS)
    if not abstract or not target:
        return None
    return {
        "id": f"aclsum/{paper['id']}",
        "source": clean_text(abstract),
        "target": target,
        "title": clean_text(str(paper["title"])),
        "upstream_split": side,
    }


def build(fetch: Fetcher) -> list[Extract]:
    """One row per paper: abstract -> challenge + approach + outcome summary."""
    rows: list[Row] = []
    raw = 0
    with fetch.wheel(PACKAGE, VERSION) as wheel:
        for split in SPLITS:
            for line in wheel.read(f"aclsum/dataset/{split}.jsonl").decode("utf-8").splitlines():
                if line.strip():
                    raw += 1
                    row = _row(json.loads(line), split)
                    if row is not None:
                        rows.append(row)
    rows = dedupe(rows, lambda r: str(r["source"]))
    eval_set = {str(r["id"]) for r in rows if SPLITS[str(r["upstream_split"])] == "eval"}
    train, evals = split_rows(rows, row_id, eval_set)
    return [Extract("aclsum", train, evals, {"raw": raw, "clean": len(rows)})]
