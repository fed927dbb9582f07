"""Quality metrics through the libraries people cite: scikit-learn, rouge-score and sacrebleu.

All scores are on a 0-100 scale so that tables and relative-to-full-fine-tuning ratios read alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

HIGHER_IS_BETTER = {"accuracy", "macro_f1", "rouge1", "rouge2", "rougeL", "bleu", "chrf"}


def classification_metrics(predictions: Sequence[int], references: Sequence[int], num_labels: int,
                           names: Sequence[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    scores = {
        "accuracy": 100.0 * accuracy_score(references, predictions),
        "macro_f1": 100.0 * f1_score(references, predictions, average="macro", labels=list(range(num_labels)),
                                     zero_division=0),
    }
    return {k: float(v) for k, v in scores.items() if k in names}


def _rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for prediction, reference in zip(predictions, references, strict=True):
        for key, score in scorer.score(reference, prediction).items():
            totals[key] += score.fmeasure
    return {k: 100.0 * v / max(1, len(predictions)) for k, v in totals.items()}


def _bleu(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    import sacrebleu

    return {"bleu": float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)}


def _chrf(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    import sacrebleu

    return {"chrf": float(sacrebleu.corpus_chrf(list(predictions), [list(references)]).score)}


_TEXT_METRICS: dict[str, Callable[[Sequence[str], Sequence[str]], dict[str, float]]] = {
    "rouge1": _rouge, "rouge2": _rouge, "rougeL": _rouge, "bleu": _bleu, "chrf": _chrf,
}


def text_metrics(predictions: Sequence[str], references: Sequence[str], names: Sequence[str]) -> dict[str, float]:
    """Corpus-level scores for generated text against one reference each."""
    scores: dict[str, float] = {}
    for name in names:
        if name not in scores:
            scores.update(_TEXT_METRICS[name](predictions, references))
    return {k: v for k, v in scores.items() if k in names}


VALID = set(_TEXT_METRICS) | {"accuracy", "macro_f1"}


def correct_rows(predictions: Sequence[int], references: Sequence[int]) -> list[float]:
    """Per eval row, on the accuracy scale: 100 where right, 0 where wrong (their mean is the accuracy)."""
    return [100.0 if p == r else 0.0 for p, r in zip(predictions, references, strict=True)]


def text_rows(predictions: Sequence[str], references: Sequence[str], metric: str) -> list[float]:
    """Per eval row, the sentence-level score of `metric` (ROUGE-L F1 or chrF, 0-100): what a bootstrap over
    eval rows resamples to put an interval on a difference between two runs on the same rows."""
    if metric.startswith("rouge"):
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer([metric], use_stemmer=True)
        return [100.0 * scorer.score(r, p)[metric].fmeasure for p, r in zip(predictions, references, strict=True)]
    import sacrebleu

    if metric == "chrf":
        return [float(sacrebleu.sentence_chrf(p, [r]).score) for p, r in zip(predictions, references, strict=True)]
    return [float(sacrebleu.sentence_bleu(p, [r]).score) for p, r in zip(predictions, references, strict=True)]
