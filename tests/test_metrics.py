"""Known answers for every quality metric: peftbench.metrics against values worked out by hand.

Each case is small enough to check with a pencil; the arithmetic is in the comments. The libraries
(scikit-learn, rouge-score, sacrebleu) are what peftbench calls, so agreeing with them alone would prove
little: these pin the numbers, the 0-100 scale and the corpus-level aggregation.
"""

from __future__ import annotations

import pytest

from peftbench.metrics import classification_metrics, text_metrics


def test_accuracy():
    # 3 of 4 predictions are right.
    scores = classification_metrics([0, 1, 1, 0], [0, 1, 0, 0], 2, ["accuracy"])
    assert scores == {"accuracy": pytest.approx(75.0)}


def test_macro_f1():
    # class 0: tp 2, fp 0, fn 1 -> P 1, R 2/3, F1 0.8; class 1: tp 1, fp 1, fn 0 -> P 1/2, R 1, F1 2/3.
    scores = classification_metrics([0, 1, 1, 0], [0, 1, 0, 0], 2, ["macro_f1"])
    assert scores["macro_f1"] == pytest.approx(100 * (0.8 + 2 / 3) / 2)
    # A declared label that neither side uses counts as F1 0 in the macro average (zero_division=0).
    three = classification_metrics([0, 1, 1, 0], [0, 1, 0, 0], 3, ["macro_f1"])
    assert three["macro_f1"] == pytest.approx(100 * (0.8 + 2 / 3 + 0) / 3)


# "the cat sat" against "the cat sat on the mat": 3 of 3 predicted unigrams are in the reference (P 1),
# 3 of its 6 are covered (R 1/2): F 2/3. Bigrams: 2 of 2 predicted, 2 of 5 in the reference: F 2*0.4/1.4.
# Longest common subsequence: 3 tokens -> P 1, R 1/2, F 2/3.
PRED, REF = "the cat sat", "the cat sat on the mat"


@pytest.mark.parametrize("name, expected", [
    ("rouge1", 100 * 2 / 3),
    ("rouge2", 100 * 2 * 0.4 / 1.4),
    ("rougeL", 100 * 2 / 3),
])
def test_rouge(name, expected):
    assert text_metrics([PRED], [REF], [name]) == {name: pytest.approx(expected, abs=1e-6)}


def test_rouge_averages_over_examples():
    # A perfect second pair: the mean of 2/3 and 1.
    scores = text_metrics([PRED, "a b"], [REF, "a b"], ["rouge1"])
    assert scores["rouge1"] == pytest.approx(100 * (2 / 3 + 1) / 2)


def test_bleu():
    # "the cat sat on the mat" vs "the cat sat on a mat" (same length: brevity penalty 1).
    # Clipped n-gram precisions: 1-grams 5/6, 2-grams 3/5, 3-grams 2/4, 4-grams 1/3; BLEU is their
    # geometric mean: (5/6 * 3/5 * 1/2 * 1/3) ** (1/4) = 0.5373.
    scores = text_metrics(["the cat sat on the mat"], ["the cat sat on a mat"], ["bleu"])
    assert scores["bleu"] == pytest.approx(100 * (5 / 6 * 3 / 5 * 1 / 2 * 1 / 3) ** 0.25, abs=1e-4)
    assert text_metrics(["a perfect copy here"], ["a perfect copy here"], ["bleu"])["bleu"] == pytest.approx(100)


def test_chrf():
    # chrF (beta 2, character n-grams 1-6, whitespace ignored): "abc" vs "abd".
    # 1-grams: 2 of 3 match (P = R = 2/3); 2-grams: ab matches, bc does not (1/2); 3-grams: 0/1.
    # Orders 4-6 exist on neither side and are left out. Mean P = mean R = (2/3 + 1/2 + 0) / 3 = 7/18,
    # and F_beta with P = R is P itself.
    assert text_metrics(["abc"], ["abd"], ["chrf"])["chrf"] == pytest.approx(100 * 7 / 18, abs=1e-6)
    assert text_metrics(["same words"], ["same words"], ["chrf"])["chrf"] == pytest.approx(100)


def test_only_requested_metrics_are_returned():
    scores = text_metrics([PRED], [REF], ["rougeL", "bleu"])
    assert set(scores) == {"rougeL", "bleu"}


def test_row_scores_average_back_to_the_metric():
    """The per-row scores a run records (`eval_rows`) are the metric's own parts: their mean is the accuracy or
    the ROUGE-L a run reports, so a bootstrap over rows is a bootstrap of that metric."""
    from peftbench.metrics import classification_metrics, correct_rows, text_metrics, text_rows

    preds, refs = [0, 1, 1, 2], [0, 1, 2, 2]
    assert sum(correct_rows(preds, refs)) / 4 == classification_metrics(preds, refs, 3, ["accuracy"])["accuracy"]
    hyp = ["the cat sat on the mat", "a dog", "completely different words"]
    ref = ["the cat sat on a mat", "the dog barked", "nothing alike here"]
    rows = text_rows(hyp, ref, "rougeL")
    assert sum(rows) / len(rows) == pytest.approx(text_metrics(hyp, ref, ["rougeL"])["rougeL"])
    assert len(text_rows(hyp, ref, "chrf")) == 3
