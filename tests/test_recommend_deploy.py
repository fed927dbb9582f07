"""`recommend --gpus N` and `recommend --deploy`: what happens around training moves the answer, and says how.

Queries are the shipped cache's examples (benchmarks/recommender_track_record.py), so no estimate traces."""

from __future__ import annotations

from peftbench.recommend import recommend

QUERY = dict(gpu="24GB", model="llama-3.1-8b", train_examples=5000, seq_len=256)


def test_methods_that_do_not_fit_one_card_get_their_smallest_multi_gpu_setup():
    one = recommend("classification", **QUERY)
    full = next(c for c in one.not_ranked if c.method == "full")
    assert full.status == "does not fit"
    four = recommend("classification", gpus=4, **QUERY)
    full4 = next(c for c in four.ranking + four.not_ranked if c.method == "full")
    # Full fine-tuning of 8B needs several 24 GB cards: with four it is a candidate again, at a stated strategy,
    # and its per-GPU peak fits the card.
    assert full4.fits and full4.peak_bytes < 24 * 2**30
    assert any(r.startswith("assumes ") and " with " in r for r in full4.reasons)
    assert any("up to 4 GPUs" in n for n in four.notes)


def test_deploy_edge_reorders_within_evidence_tiers_and_explains_each_move():
    rec = recommend("classification", deploy="edge", **QUERY)
    assert rec.deploy is not None and rec.deploy["scenario"] == "edge"
    assert all(any(r.startswith("serving (edge): ") for r in c.reasons) for c in rec.ranking)
    # Serving cost never lifts a thinly evidenced method above a well evidenced one.
    tiers = [0 if c.near_comparisons >= 5 else 1 for c in rec.ranking]
    assert tiers == sorted(tiers)
    assert any(rec.deploy["summary"] in n for n in rec.notes)


def test_deploy_flags_without_deploy_are_refused(cli):
    code, _, err = cli("recommend", "--task", "classification", "--gpu", "24GB", "--max-latency-overhead", "1.2")
    assert code == 2 and "only with --deploy" in err and err.count("\n") == 1
