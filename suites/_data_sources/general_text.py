"""General English text for the forgetting measurement: news articles from ``gensim`` 4.4.0's test data.

``gensim/test/test_data/lee_background.cor`` is the background corpus of Lee, Pincombe & Welsh (2005),
"An empirical evaluation of models of text document similarity": 300 Australian Broadcasting Corporation
news articles, one per line. No peftbench task trains on it (the tasks use BBC and Reuters news, reviews,
the Constitution of India, the Bible, MMLU, ACL abstracts), so a change of the model's loss on it after
fine-tuning measures what the model forgot of its general ability, not what the task taught it.
"""

from __future__ import annotations

from .common import Extract, Fetcher, Row, clean_text, dedupe, take, word_count

PACKAGE, VERSION = "gensim", "4.4.0"
MEMBER = "gensim/test/test_data/lee_background.cor"
MIN_WORDS = 150  # about 128 SmolLM2 tokens or more, so each article fills one measured sequence
MAX_ROWS = 96


def build(fetch: Fetcher) -> list[Extract]:
    """Articles of at least MIN_WORDS words, deduplicated, the first MAX_ROWS by stable hash; no train split."""
    with fetch.wheel(PACKAGE, VERSION) as wheel:
        lines = wheel.read(MEMBER).decode("utf-8").splitlines()
    rows: list[Row] = []
    for number, line in enumerate(lines):
        text = clean_text(line)
        if word_count(text) >= MIN_WORDS:
            rows.append({"id": f"lee_background/{number:03d}", "text": text})
    kept = take(dedupe(rows, lambda r: str(r["text"])), MAX_ROWS)
    stats = {"raw": len(lines), "long_enough": len(rows), "kept": len(kept),
             "words": sum(word_count(str(r["text"])) for r in kept)}
    return [Extract("general_text", [], kept, stats)]
