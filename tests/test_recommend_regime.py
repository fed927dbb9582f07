"""The regime-aware quality model, the evidence rules, the hyper-parameter rules and the track record.
No estimator calls: every test here runs in well under a second, except the real track record (~5 s)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from peftbench.recommend.evaluate import BASELINES, PICKERS, evaluate, recommender_order
from peftbench.recommend.evidence import Run
from peftbench.recommend.hparams import learning_rate, lora_rank, suggest
from peftbench.recommend.points import Point, corpus_points, own_points
from peftbench.recommend.regime import MIN_NEAR_FOR_FIRST, Regime, fit

QUERY = Regime("generation", "decoder", math.log10(3e9), math.log10(20_000), math.log10(3_750))


def _point(comp: str, method: str, value: float, source: str = "s") -> Point:
    return Point(source=source, comparison=comp, method=method, config=method, value=value, score=50 * value,
                 metric="accuracy", kind="generation", architecture="decoder", log_params=QUERY.log_params,
                 log_examples=QUERY.log_examples, log_steps=QUERY.log_steps, cite=f"{comp} {method}")


def test_two_runs_never_outrank_fifty():
    """LN-tuning's failure mode: two glowing comparisons must not beat fifty solid ones."""
    points = []
    for i in range(50):
        points += [_point(f"c{i}", "lora", 1.0, f"s{i % 5}"),
                   _point(f"c{i}", "dora", 1.02 + 0.01 * (i % 3 - 1), f"s{i % 5}")]
    for i in range(2):
        points += [_point(f"t{i}", "lora", 1.0), _point(f"t{i}", "ln_tuning", 1.15)]
    est = fit(points, QUERY)
    order = recommender_order(["lora", "dora", "ln_tuning"], est)
    assert order.index("dora") < order.index("ln_tuning") and order[0] != "ln_tuning"
    assert est["ln_tuning"].near < MIN_NEAR_FOR_FIRST <= est["dora"].near


def test_with_one_source_in_the_regime_the_safest_well_measured_method_leads_provisionally():
    """A 1B decoder with 300 examples has only GPT-2 tables near it: an answer, but a provisional one, led by
    the risk-aware best of the methods with five comparisons (not by the highest point estimate)."""
    points = [_point(f"g{i}", m, v, source="gpt2_repo") for i in range(8)
              for m, v in (("lora", 1.0), ("full", 0.99), ("prefix_tuning", 0.97 + 0.04 * (i % 2)))]
    points += [_point(f"x{i}", m, v, source="gpt2_repo") for i in range(2) for m, v in (("lora", 1.0), ("dora", 1.2))]
    est = fit(points, QUERY)
    assert not any(e.may_lead for e in est.values())
    assert est["lora"].may_lead_provisionally and not est["dora"].may_lead_provisionally
    assert est["dora"].effect > est["lora"].effect  # the thin method scores higher ...
    order = recommender_order(["dora", "prefix_tuning", "full", "lora"], est)
    assert order[0] == "lora"  # ... but the well-measured one leads, provisionally
    assert est[order[0]].lcb == max(e.lcb for m, e in est.items() if e.may_lead_provisionally)


def test_a_method_s_own_paper_is_not_an_independent_source_for_its_first_place():
    """DoRA's repository plus one other paper is one independent word for DoRA, not the two a first place
    needs; the same two sources are two words for a method neither introduced."""
    points = []
    for i in range(6):
        source = "nvlabs_dora_repo" if i < 4 else "other_paper"
        points += [_point(f"d{i}", "lora", 1.0, source), _point(f"d{i}", "dora", 1.05, source),
                   _point(f"d{i}", "adapter", 1.04, source)]
    est = fit(points, QUERY)
    assert est["dora"].near >= MIN_NEAR_FOR_FIRST and est["dora"].near_sources == 1 and not est["dora"].may_lead
    assert est["adapter"].near_sources == 2 and est["adapter"].may_lead
    assert recommender_order(["lora", "dora", "adapter"], est)[0] == "adapter"


def test_a_thin_method_is_never_first_even_if_it_scores_highest():
    points = [_point(f"d{i}", m, 1.0, source=f"s{i % 2}") for i in range(6) for m in ("lora", "dora")]
    for i in range(3):
        points += [_point(f"c{i}", "lora", 1.0), _point(f"c{i}", "ln_tuning", 1.3)]
    est = fit(points, QUERY)
    assert est["ln_tuning"].lcb > est["lora"].lcb  # it would win on the score alone...
    assert recommender_order(["lora", "ln_tuning"], est)[0] == "lora"  # ...but not on 3 comparisons


def test_evidence_that_a_method_is_poor_ranks_it_below_a_method_with_little_evidence():
    """Below first place the order is the lower bound alone: prefix tuning measured well below LoRA eight
    times must not sit above (IA)3, seen once at LoRA's level (T0-3B's order put it third)."""
    points = [_point(f"p{i}", m, v, source=f"s{i % 4}") for i in range(8)
              for m, v in (("lora", 1.0), ("full", 1.02), ("prefix_tuning", 0.6))]
    points += [dataclasses.replace(p, log_params=QUERY.log_params + 0.6) for p in
               (_point("far", "lora", 1.0, "t"), _point("far", "ia3", 0.99, "t"))]
    est = fit(points, QUERY)
    assert est["prefix_tuning"].evidenced and not est["ia3"].evidenced  # known poor vs hardly known
    order = recommender_order(["prefix_tuning", "ia3", "lora", "full"], est)
    assert order.index("ia3") < order.index("prefix_tuning") and order[-1] == "prefix_tuning"
    assert order[0] in ("full", "lora")


def test_one_sources_praise_of_a_method_does_not_make_it_first():
    """A paper's own method usually wins in that paper: 18 comparisons from one source may rank high, not first."""
    points = [_point(f"a{i}", m, v, source="adapter_paper") for i in range(18)
              for m, v in (("lora", 1.0), ("adapter", 1.12))]
    points += [_point(f"l{i}", m, v, source=f"src{i % 3}") for i in range(9) for m, v in (("lora", 1.0), ("ia3", 0.97))]
    est = fit(points, QUERY)
    assert est["adapter"].near == 18 and est["adapter"].near_sources == 1 and not est["adapter"].may_lead
    assert est["lora"].near_sources == 4 and est["lora"].may_lead
    assert est["adapter"].lcb > est["lora"].lcb
    assert recommender_order(["lora", "adapter", "ia3"], est)[:2] == ["lora", "adapter"]


def test_a_query_without_a_data_size_weighs_every_data_size_alike():
    """Leaving the data size open must not shrink all evidence (an everyday query found "no evidence" for LoRA)."""
    open_size = dataclasses.replace(QUERY, log_examples=None, log_steps=None)
    small = [dataclasses.replace(p, log_examples=2.0, log_steps=1.5) for p in
             [_point(f"s{i}", m, v, source=f"a{i}") for i in range(5) for m, v in (("lora", 1.0), ("ia3", 0.9))]]
    large = [dataclasses.replace(p, log_examples=5.5, log_steps=4.0) for p in
             [_point(f"b{i}", m, v, source=f"b{i}") for i in range(5) for m, v in (("lora", 1.0), ("ia3", 1.1))]]
    est = fit(small + large, open_size)
    assert est["ia3"].weight == pytest.approx(10.0) and est["ia3"].near == 10  # every comparison counts fully
    assert est["ia3"].effect == pytest.approx(0.0, abs=0.02)  # the two data regimes cancel, as they should
    # A point that does not state its size is an uncertain match for a query that does.
    unstated = [dataclasses.replace(p, log_examples=None) for p in large]
    assert fit(unstated, QUERY)["ia3"].weight < fit(large, dataclasses.replace(QUERY, log_examples=5.5))["ia3"].weight


def test_distant_evidence_does_not_count_as_near():
    far = Regime("generation", "decoder", math.log10(22e6), math.log10(200), math.log10(8))
    points = [_point(f"c{i}", m, v) for i in range(10) for m, v in (("lora", 1.0), ("ia3", 1.1))]
    assert fit(points, far)["ia3"].weight < 1.0  # 2+ decades away in size, data and steps: no evidence


def _run(method: str, score: float, seed: int = 0, suite: str = "classification") -> Run:
    return Run(run_id=f"{method}{seed}{suite}", suite=suite, task="t", kind="classification", model="m",
               architecture="encoder", method=method, family="", seed=seed, score=score, hyperparameters={},
               trainable_params=1, total_params=22_000_000, train_examples=480, mean_input_tokens=30,
               mean_target_tokens=1, steps=60, config=method)


def test_own_runs_are_on_the_corpus_scale_and_cite_their_baseline():
    # Over full FT, as a published table's rows are over its reference: a gap of 10 points is -13%, however
    # close full FT sits to the majority class (over the baseline it would read -100%, and a task where full
    # FT barely learned would dominate every query near it).
    base = {"classification/t": {"chance": 50.0, "majority": 65.0, "eval_examples": 300}}
    ev = own_points([_run("full", 75.0), _run("ln_tuning", 65.0), _run("lora", 85.0)], base)
    values = {p.method: p.value for p in ev.points}
    assert values == pytest.approx({"full": 1.0, "ln_tuning": 65 / 75, "lora": 85 / 75})
    assert all("baseline 65.0" in p.cite for p in ev.points)


def test_a_task_that_cannot_tell_methods_apart_is_not_evidence():
    """A task whose table says "no method separates" is shown, never used as evidence."""
    from peftbench.recommend.fitting import default_evidence

    runs = default_evidence(None).runs
    shut = {r.task_key for r in runs if not r.informative}
    assert {"legal/mmlu_law", "medical/drug_review_sentiment"} <= shut  # at chance; stuck at the majority class
    assert "legal/constitution_part" not in shut
    ev = own_points(runs)
    assert not any(p.comparison.split("|")[1] in shut for p in ev.points)
    assert any("cannot tell methods apart" in reason for reason in ev.excluded)


def test_smoke_runs_and_chance_level_references_are_not_evidence():
    base = {"classification/t": {"chance": 25.0, "majority": 25.0, "eval_examples": 40}}
    assert not own_points([_run("full", 30.0), _run("lora", 27.0)], base).points  # 30% on 40 items: chance
    smoke = own_points([_run("full", 90.0, suite="smoke"), _run("lora", 60.0, suite="smoke")], {})
    assert not smoke.points and any("smoke" in k for k in smoke.excluded)


def test_corpus_duplicates_and_forgetting_rows_are_left_out():
    ev = corpus_points()
    assert not any(p.source == "ms_swift_benchmark" for p in ev.points)
    # BOFT's Table 1 baselines are AdaLoRA's Table 1 cells: evidence once (in AdaLoRA), and in BOFT's table only
    # the reference its OFT and BOFT rows are compared to.
    boft_quotes = [p for p in ev.points if p.source == "liu2024_boft" and p.method in ("adalora", "bitfit")]
    assert boft_quotes and all(p.anchor for p in boft_quotes)
    adalora_table_1 = [p for p in ev.points if p.source == "zhang2023_adalora" and "|Table 1|" in p.comparison]
    assert adalora_table_1 and not any(p.anchor for p in adalora_table_1)
    # The LoRA paper's GLUE table and the microsoft/LoRA README print the same runs: one source keeps them as
    # evidence, or holding the paper out would test it on its own numbers.
    import re
    from collections import defaultdict
    sources = defaultdict(set)
    for p in ev.points:
        if p.anchor:
            continue
        model = re.sub(r"[^a-z0-9]", "", p.cite.split(" on ")[1].split(",")[0].lower())
        sources[(model, p.cite.split(", ")[1].split(":")[0], p.method, p.metric, round(p.score, 3))].add(p.source)
    # What two sources still both count are single equal figures in rows that are not quotes: coincidences
    # (one cell each, the rest of each row differs), not copies.
    twice = {key for key, s in sources.items() if len(s) > 1}
    assert twice == {("debertav3base", "SQuAD v1.1", "lora", "f1", 93.1),  # LoftQ's LoRA vs AdaLoRA's (EM differs)
                     ("debertav3base", "SST-2", "lora", "accuracy", 95.64),  # PiSSA's own LoRA run vs SVFT's r=1
                     ("llama7b", "WinoGrande", "lora", "accuracy", 78.8)}  # DoRA's r=64 vs LLM-Adapters' LoRA
    assert sum(p.anchor for p in ev.points if p.source == "microsoft_lora_repo") >= 20


def test_a_quoted_baseline_is_the_reference_of_its_table_not_evidence_of_its_own():
    """A paper that quotes another's LoRA and full-FT rows (BOFT quoting AdaLoRA) compares its own method with
    them: that difference is evidence, the quoted rows add nothing to LoRA's or full FT's (their own paper's
    copy already counts)."""
    quoted = [dataclasses.replace(_point("b", m, v, "quoting"), anchor=True) for m, v in (("lora", 0.95),
                                                                                         ("full", 1.0))]
    points = [_point("a", "lora", 0.95, "original"), _point("a", "full", 1.0, "original"), *quoted,
              _point("b", "oft", 0.99, "quoting")]
    est = fit(points, QUERY)
    assert est["oft"].points == 1 and est["oft"].effect > 0  # +0.04 over the quoted LoRA, shrunk to its kin
    assert est["lora"].points == 1 and est["full"].points == 1  # the original table only
    assert all(not p.anchor for _, p in est["full"].nearest)
    # On the shipped corpus: BOFT's OFT rows are compared with the LoRA row it quotes from AdaLoRA.
    ev = corpus_points()
    oft = fit(ev.points, Regime("classification", "encoder", math.log10(184e6), math.log10(50_000), None))["oft"]
    assert oft.points >= 8  # one per GLUE task of BOFT's Table 1 at least


def test_per_method_training_lengths_keep_one_table_one_comparison():
    """T-Few trains full FT 300 steps and (IA)3 1,000 steps side by side: one comparison of 8 methods, not
    four comparisons that never meet. A table that repeats one configuration at several lengths (LoRA
    Learns Less: 1 to 16 epochs) is split by length."""
    ev = corpus_points()
    copa = {p.method for p in ev.points if p.source == "liu2022_ia3_tfew" and "|COPA|" in p.comparison}
    assert {"full", "ia3", "lora", "ln_tuning", "prompt_tuning"} <= copa
    epochs = {p.comparison for p in ev.points if p.source == "biderman2024_lora_learns_less"
              and "Table S7" in p.comparison}
    assert len(epochs) >= 4


def test_learning_rates_are_plausible_by_model_size():
    points = corpus_points().points
    assert learning_rate("lora", 8e9, points)[0] <= 3e-4
    assert learning_rate("qlora", 8e9, points)[0] == learning_rate("lora", 8e9, points)[0]
    assert learning_rate("full", 7e9, points)[0] <= 5e-5
    assert learning_rate("full", 125e6, points)[0] >= learning_rate("full", 7e9, points)[0]


def test_rank_grows_with_data_and_qlora_shares_lora_settings():
    ranks = [lora_rank(n) for n in (50, 480, 5_000, 50_000, 500_000)]
    assert ranks == sorted(ranks) and ranks[0] < ranks[-1]
    defaults = {"learning_rate": 5e-4, "r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": None}
    lora, _ = suggest("lora", defaults, 8e9, 50_000, "decoder", [])
    qlora, _ = suggest("qlora", dict(defaults, learning_rate=2e-4), 8e9, 50_000, "decoder", [])
    assert lora == qlora and lora["r"] == 32 and lora["target_modules"] == "all-linear"


def test_leave_one_source_out_reports_every_baseline():
    report = evaluate()
    loso = report["leave_one_source_out"]
    assert loso["sources"] >= 10
    names = {s["strategy"]: s for s in loso["summary"]}
    assert set(names) == set(PICKERS)
    assert {"always LoRA r=16", "rank by data size (LoRA)", "full FT whenever it fits",
            "cheapest method within noise"} <= set(BASELINES)
    # The regression guard: over sources it never saw the recommender beats every baseline on regret (this
    # session, 23 sources: 1.19 against 1.25 for "full FT whenever it fits", the closest), and orders the
    # comparisons of >= 8 methods with rho >= 0.6 (0.64 over T-Few's 22).
    rec = names["recommender"]
    assert all(rec["mean_regret"] < names[s]["mean_regret"] for s in BASELINES)
    assert rec["rho_wide"] is not None and rec["rho_wide"] >= 0.6
    assert report["leave_one_task_out"]["summary"]
    # The single-run protocol: scored at un-tuned rates where sweeps exist (own tasks and published sweeps).
    single = {s["strategy"]: s for s in report["single_run"]["summary"]}
    assert set(single) == set(PICKERS) and report["single_run"]["comparisons"] >= 10


def test_shipped_task_baselines_are_the_informativeness_computation():
    """The recommender's shipped chance/majority baselines are a copy of `informativeness.suite_baselines` (one
    computation); a suite or data change must be followed by `points.write_task_baselines()`."""
    from peftbench.recommend.points import compute_task_baselines, task_baselines

    shipped, fresh = task_baselines(), compute_task_baselines()
    assert sorted(shipped) == sorted(fresh), "rewrite with peftbench.recommend.points.write_task_baselines()"
    for key, facts in fresh.items():
        assert shipped[key]["eval_examples"] == facts["eval_examples"] and shipped[key]["kind"] == facts["kind"]
        assert shipped[key]["chance"] == pytest.approx(facts["chance"], abs=0.01)
        assert shipped[key]["majority"] == pytest.approx(facts["majority"], abs=0.01)


def test_one_paper_is_one_source_however_many_rows_it_has():
    """Fifty comparisons from one paper leave the between-source doubt; the same fifty spread over ten
    papers do not. A method's own paper (it usually wins there) cannot make it certain."""
    from peftbench.recommend.regime import BETWEEN_SOURCES

    one = [_point(f"c{i}", m, v, source="paper") for i in range(50) for m, v in (("lora", 1.0), ("dora", 1.05))]
    many = [_point(f"c{i}", m, v, source=f"paper{i % 10}") for i in range(50)
            for m, v in (("lora", 1.0), ("dora", 1.05))]
    se_one, se_many = fit(one, QUERY)["dora"].se, fit(many, QUERY)["dora"].se
    assert se_one >= 0.95 * BETWEEN_SOURCES and se_many < 0.5 * se_one


def test_a_thin_method_is_pulled_toward_its_kin_not_toward_lora():
    """Prefix tuning measured once, well, among soft-prompt kin measured often and badly: its estimate leans
    on its kin; an unrelated method's strong showing does not lift it."""
    points = []
    for i in range(20):
        points += [_point(f"p{i}", "lora", 1.0, source=f"s{i % 5}"),
                   _point(f"p{i}", "prompt_tuning", 0.7, source=f"s{i % 5}"),
                   _point(f"p{i}", "dora", 1.1, source=f"s{i % 5}")]
    points += [_point("x", "lora", 1.0, source="x"), _point("x", "prefix_tuning", 1.0, source="x")]
    est = fit(points, QUERY)
    assert est["prefix_tuning"].effect < -0.1  # one good comparison, pulled toward prompt tuning's -0.3
    assert est["prefix_tuning"].lcb < est["lora"].lcb


def test_a_tuned_method_is_evidence_only_through_its_selected_runs():
    from peftbench.record import RunRecord
    from peftbench.results import tuned_over_untuned

    plain = [RunRecord(suite="s", task="t", model="m", method=m, seed=i, run_id=f"{m}{i}", status="ok")
             for m in ("lora", "full") for i in range(3)]
    tuned = [RunRecord(suite="s", task="t", model="m", method="lora", seed=i, run_id=f"sel{i}", status="ok",
                       role="selected") for i in range(3)]
    kept = tuned_over_untuned(plain + tuned)
    assert {r.run_id for r in kept if r.method == "lora"} == {"sel0", "sel1", "sel2"}
    assert sum(r.method == "full" for r in kept) == 3  # untuned full FT stays until it is tuned too


def test_a_query_naming_a_benchmarked_task_leans_on_that_tasks_own_measurement():
    """`--task SUITE/TASK` (the report's pick): the task's own comparison weighs DIRECT comparisons, so the
    answer agrees with the table beside it unless the other evidence is much stronger."""
    from peftbench.recommend.regime import DIRECT

    own = [Point(source="own:s", comparison="own|s/t|m", method=m, config=m, value=v, score=v, metric="score",
                 kind="generation", architecture="decoder", log_params=QUERY.log_params,
                 log_examples=QUERY.log_examples, log_steps=QUERY.log_steps, cite="own", runs=3)
           for m, v in (("lora", 0.5), ("ia3", 0.9))]
    others = [_point(f"c{i}", m, v) for i in range(2) for m, v in (("lora", 1.0), ("ia3", 0.9))]
    plain = fit(own + others, QUERY)["ia3"]
    direct = fit(own + others, Regime(*dataclasses.astuple(QUERY)[:5], own_task="s/t"))["ia3"]
    assert direct.weight == pytest.approx(plain.weight + DIRECT - 1)
    assert direct.effect > plain.effect > 0  # ia3 beat LoRA on the task itself by 0.4; elsewhere it trails by 0.1


def test_an_own_lead_on_one_seed_weighs_less_than_one_on_three():
    """A difference between own runs counts by its seeds: one seed beside LoRA's three carries half a
    comparison's weight, three beside three a whole one; published figures keep a whole weight."""
    from peftbench.recommend.regime import FULL_SEEDS

    def own(method: str, value: float, runs: int) -> Point:
        return Point(source="own:s", comparison="own|s/t|m", method=method, config=method, value=value, score=value,
                     metric="score", kind="generation", architecture="decoder", log_params=QUERY.log_params,
                     log_examples=QUERY.log_examples, log_steps=QUERY.log_steps, cite="own", runs=runs)

    one = fit([own("lora", 0.5, FULL_SEEDS), own("oft", 0.9, 1)], QUERY)["oft"]
    three = fit([own("lora", 0.5, FULL_SEEDS), own("oft", 0.9, FULL_SEEDS)], QUERY)["oft"]
    assert one.weight == pytest.approx(three.weight / 2)
    assert one.effect < three.effect  # shrunk harder toward its kin
