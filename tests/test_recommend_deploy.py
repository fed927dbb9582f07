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


def test_deploy_edge_reorders_and_explains_each_move_but_never_puts_thin_evidence_first():
    rec = recommend("classification", deploy="edge", **QUERY)
    assert rec.deploy is not None and rec.deploy["scenario"] == "edge"
    assert all(any(r.startswith("serving (edge): ") for r in c.reasons) for c in rec.ranking)
    # The plain order's rule holds after serving costs: first place needs 5 comparisons in the regime.
    assert rec.ranking[0].near_comparisons >= 5
    assert any(c.near_comparisons < 5 for c in rec.ranking)  # thin methods are still ranked, lower down
    assert any(rec.deploy["summary"] in n for n in rec.notes)


def test_deploy_flags_without_deploy_are_refused(cli):
    code, _, err = cli("recommend", "--task", "classification", "--gpu", "24GB", "--max-latency-overhead", "1.2")
    assert code == 2 and "only with --deploy" in err and err.count("\n") == 1


def test_serving_costs_reorder_below_first_place_but_a_thin_method_never_leads():
    from peftbench.recommend.deploy import deploy_ranking

    # A thin method with the best serving score stays below the well-evidenced leader, yet passes another
    # well-evidenced method whose serving cost is higher (no evidence tiers below first place).
    candidates = [dict(method="lora", quality=0.00, overhead_merged=1.0),
                  dict(method="full", quality=-0.01, overhead_merged=1.0, may_lead=True),
                  dict(method="ia3", quality=0.05, overhead_merged=1.0, may_lead=False)]
    ranked = [e.method for e in deploy_ranking(candidates, "edge").entries]
    assert ranked == ["lora", "ia3", "full"]
