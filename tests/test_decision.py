"""The decision rule, read back from its statement (`peftbench.recommend.decision`), and the learning-rate
sensitivity it weighs (`peftbench.recommend.sensitivity`)."""

from __future__ import annotations

import math

import pytest

from peftbench.recommend.decision import TIE_MARGIN, VALUE_MARGIN, Option, decide, options_for
from peftbench.recommend.regime import QualityEstimate
from peftbench.recommend.sensitivity import (
    Sensitivity,
    Sweep,
    at_scale,
    expected_loss,
    own_sweeps,
    published_sweeps,
    sweep_of,
)
from peftbench.record import RunRecord


def test_a_tie_goes_to_the_cheaper_method_and_says_what_the_other_gives():
    full = Option("full", 0.004, 0.03, cost=10.0)
    lora = Option("lora", 0.0, 0.02, cost=3.0)
    d = decide([full, lora])
    assert d.pick.method == "lora" and d.best_quality.method == "full" and d.differs
    assert {o.method for o in d.ties} == {"full", "lora"}


def test_a_separated_better_method_is_the_pick_however_expensive_and_best_value_is_offered():
    full = Option("full", 0.06, 0.01, cost=10.0)
    dora = Option("dora", 0.045, 0.01, cost=4.0)
    lora = Option("lora", 0.0, 0.01, cost=3.0)
    d = decide([full, dora, lora])
    assert d.pick.method == "full" and not d.differs
    assert d.best_value is not None and d.best_value.method == "dora"  # cheapest within 2 points of the best
    assert decide([full, dora, lora], margin=0.10).best_value.method == "lora"


def test_a_cheap_gamble_is_no_tie():
    """A much lower prediction with an interval wide enough to reach the best is not a tie: ties must also be
    predicted within TIE_MARGIN."""
    best = Option("lora", 0.0, 0.02, cost=3.0)
    gamble = Option("prompt_tuning", -0.15, 0.20, cost=1.0)
    assert decide([best, gamble]).pick.method == "lora"
    near = Option("ia3", -TIE_MARGIN / 2, 0.02, cost=1.0)
    assert decide([best, near]).pick.method == "ia3"


def test_costs_within_ten_percent_are_one_cost_then_robustness_decides():
    a = Option("lora", 0.0, 0.02, lr_loss=0.0, cost=3.0)
    b = Option("rslora", 0.002, 0.02, lr_loss=-0.0, cost=2.9)
    fragile = Option("dora", 0.004, 0.02, lr_loss=0.002, cost=2.8)
    assert decide([a, b, fragile]).pick.method == "rslora"
    unknown = Option("vera", 0.0, 0.02, cost=None)
    assert decide([unknown, a]).pick.method == "lora"  # an unknown cost sorts after every known one


def test_only_methods_that_may_lead_are_picked():
    thin = Option("oft", 0.10, 0.01, cost=1.0, may_lead=False)
    lora = Option("lora", 0.0, 0.02, cost=3.0)
    assert decide([thin, lora]).pick.method == "lora"
    assert decide([thin]) is None


def _estimate(method: str, effect: float, se: float, lead: bool = True) -> QualityEstimate:
    return QualityEstimate(method, effect, se, 20.0 if lead else 2.0, 10 if lead else 1, 20,
                           near_sources=3 if lead else 1)


def test_the_tuning_budget_moves_the_pick_away_from_a_method_that_needs_a_sweep():
    """A method a point better when tuned but 6 points worse at the suggested rate loses to a robust one when
    the user runs once, and wins when they can afford a sweep."""
    estimates = {"full": _estimate("full", 0.01, 0.005), "lora": _estimate("lora", 0.0, 0.005)}
    sens = {"full": Sensitivity("full", 0.05, 0.25, weight=5.0, untuned=0.06),
            "lora": Sensitivity("lora", 0.02, 0.02, weight=5.0, untuned=0.0)}
    costs = {"full": 1.0, "lora": 1.0}
    once = decide(options_for(["full", "lora"], estimates, sens, costs, tuning_runs=1))
    swept = decide(options_for(["full", "lora"], estimates, sens, costs, tuning_runs=3))
    assert once.pick.method == "lora" and swept.pick.method == "full"


def test_qlora_takes_loras_quality_and_keeps_its_own_cost():
    estimates = {"lora": _estimate("lora", 0.0, 0.01)}
    options = options_for(["lora", "qlora"], estimates, {}, {"lora": 3.0, "qlora": 5.0}, 1, {"qlora": "lora"})
    by = {o.method: o for o in options}
    assert by["qlora"].quality == by["lora"].quality and by["qlora"].cost == 5.0
    assert decide(options).pick.method == "lora"


def test_expected_loss_follows_the_budget():
    sens = Sensitivity("x", low=0.09, high=0.30, weight=3.0, untuned=0.05)
    assert expected_loss(sens, 1) == pytest.approx(0.05)
    assert expected_loss(sens, 2) == pytest.approx(min(0.05, 0.09 / 3))
    assert expected_loss(sens, 3) == 0.0 and expected_loss(None, 1) == 0.0
    no_default = Sensitivity("x", low=0.09, high=0.30)
    assert expected_loss(no_default, 1) == pytest.approx((0.09 + 0.30) / 3)


def test_a_sweep_gives_the_losses_a_third_below_and_three_times_above_its_best_rate():
    sweep = sweep_of({1e-4: 50.0, 3e-4: 60.0, 9e-4: 30.0}, reference=80.0, source="s", comparison="c",
                     method="lora", log_params=9.0, cite="")
    assert sweep.best_rate == 3e-4
    assert sweep.low == pytest.approx(10 / 80) and sweep.high == pytest.approx(30 / 80)
    assert sweep.loss_at(1e-4) == pytest.approx(10 / 80) and sweep.loss_at(3.2e-4) == 0.0
    assert sweep_of({1e-4: 50.0}, 80.0, source="s", comparison="c", method="m", log_params=None, cite="") is None


def _typed(dicts: list[dict]) -> list:
    """Records as the store reads them, from test dicts (a run id, suite and status where a test leaves them out)."""
    return [RunRecord.from_dict({"run_id": f"run{i}", "suite": "s", "status": "ok", **d}) for i, d in enumerate(dicts)]


def _sweep_record(method: str, factor: float, score: float, task: str = "t") -> dict:
    return {"role": "sweep", "status": "ok", "suite": "s", "task": task, "model": "m", "method": method,
            "task_kind": "classification", "metrics": {"accuracy": score}, "total_params": 22_000_000,
            "hyperparameters": {"learning_rate": 1e-3 * factor}, "tune": {"base_learning_rate": 1e-3}}


def test_own_sweeps_are_relative_to_full_fts_best_and_know_the_default_rate():
    records = [_sweep_record("full", f, s) for f, s in ((0.33, 70), (1, 80), (3, 60))]
    records += [_sweep_record("lora", f, s) for f, s in ((0.33, 40), (1, 60), (3, 76))]
    records = _typed(records)
    sweeps = {s.method: s for s in own_sweeps(records)}
    lora = sweeps["lora"]
    assert lora.best_rate == pytest.approx(3e-3) and lora.untuned_rate == pytest.approx(1e-3)
    assert lora.low == pytest.approx((76 - 60) / 80) and lora.high is None  # nothing swept at x9
    assert lora.loss_at(lora.untuned_rate) == pytest.approx(16 / 80)
    assert own_sweeps(records, informative=lambda suite, task: False) == []


def test_published_rows_differing_only_in_learning_rate_are_a_sweep():
    class Row:
        def __init__(self, lr: float, score: float, metric: str = "accuracy") -> None:
            self.source_id, self.locator, self.model, self.task = "src", "Table 1", "M-1B", "GSM8K"
            self.train_examples, self.training_length, self.metric, self.method = 1000, "3 epochs", metric, "lora"
            self.method_published, self.citation = "LoRA", "X"
            self.task_kind, self.architecture = "generation", "decoder"
            self.full_ft_score, self.total_params, self.score = 50.0, 1e9, score
            self.hyperparameters = {"r": 8, "learning_rate": lr}

    rows = [Row(1e-4, 40), Row(3e-4, 50), Row(1e-3, 45)]
    avg = [Row(1e-4, 1, "math_avg"), Row(3e-4, 2, "math_avg")]  # the same runs' average: counted once
    sweeps = published_sweeps(rows + avg)
    assert len(sweeps) == 1 and sweeps[0].best_rate == 3e-4 and sweeps[0].low == pytest.approx(10 / 50)


def test_sweeps_far_from_the_query_size_do_not_single_a_method_out():
    near = [Sweep("own:s", f"c{i}", "vera", 1e-3, 0.4, 0.4, 3, math.log10(2e7), "") for i in range(5)]
    near += [Sweep("own:s", f"c{i}", "lora", 1e-3, 0.1, 0.1, 3, math.log10(2e7), "") for i in range(5)]
    small, large = at_scale(near, math.log10(2e7)), at_scale(near, math.log10(8e9))
    assert small["vera"].low > small["lora"].low + 0.2
    assert abs(large["vera"].low - large["lora"].low) < 0.01 and large["vera"].weight < 0.01


def test_value_margin_default_is_two_points():
    assert VALUE_MARGIN == pytest.approx(0.02)
