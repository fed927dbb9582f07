"""tune=lr: the sweep plan, the validation split carved from the training rows, selection, run identities."""

from __future__ import annotations

import dataclasses

import pytest

from peftbench.errors import UserError
from peftbench.overrides import parse_overrides
from peftbench.record import RunRecord
from peftbench.runs import tuning
from peftbench.runs.plan import build_plan

ARGS = ["suite=smoke", "tasks=[rt_sentiment]", "methods=[lora,ia3]", "seeds=[0,1]", "train.max_steps=2"]


def _record(status: str, accuracy: float | None, **fields) -> RunRecord:
    return RunRecord(run_id="r", suite="s", task="t", method="m", status=status,
                     metrics={} if accuracy is None else {"accuracy": accuracy}, **fields)


def _ok(accuracy: float, **fields) -> RunRecord:
    return _record("ok", accuracy, **fields)


def _plan(*extra: str):
    overrides = parse_overrides([*ARGS, *extra])
    return build_plan(overrides), tuning.parse_tune(overrides.values.get("tune"), overrides.tune)


def test_sweep_covers_the_grid_around_each_methods_rate_on_the_first_seed():
    plan, config = _plan("tune=lr", "tune.grid=[0.5,1,2]")
    sweeps = tuning.sweep_specs(plan.specs, config)
    assert set(sweeps) == {("rt_sentiment", "lora"), ("rt_sentiment", "ia3")}
    base = {s.method: s.train.learning_rate for s in plan.specs}
    for (_, method), group in sweeps.items():
        assert [s.tune["factor"] for s in group] == [0.5, 1.0, 2.0]
        assert [s.train.learning_rate for s in group] == pytest.approx([base[method] * f for f in (0.5, 1, 2)])
        assert all(s.hyperparameters["learning_rate"] == s.train.learning_rate for s in group)
        assert {s.seed for s in group} == {0} and {s.tune["role"] for s in group} == {"sweep"}
    ids = [s.run_id for g in sweeps.values() for s in g] + [s.run_id for s in plan.specs]
    assert len(set(ids)) == len(ids)  # a sweep run is never mistaken for a plain run at the same rate


def test_default_grid_and_bad_tune_keys():
    assert tuning.parse_tune("lr", {}).grid == (0.33, 1.0, 3.0)
    assert tuning.parse_tune(None, {}) is None
    for what, options in [("wd", {}), ("lr", {"grid": [1, -3]}), ("lr", {"grid": []}), ("lr", {"grids": [1]}),
                          (None, {"grid": [1]}), ("lr", {"fraction": 1.5}), ("lr", {"min_rows": 0})]:
        with pytest.raises(UserError):
            tuning.parse_tune(what, options)


def test_validation_split_comes_from_training_rows_and_never_touches_eval():
    from peftbench.data import load_task_data

    plan, config = _plan("tune=lr")
    spec = tuning.sweep_specs(plan.specs, config)[("rt_sentiment", "lora")][0]
    suite_task = plan.suite.task("rt_sentiment")
    data = load_task_data(suite_task)
    sweep = tuning.sweep_data(data, spec.tune)
    key = lambda row: (row["text"], row["label"])  # noqa: E731
    train, val, held_out_eval = ({key(r) for r in d} for d in (sweep.train, sweep.eval, data.eval))
    assert len(sweep.eval) == max(16, round(0.2 * len(data.train)))
    assert len(sweep.train) + len(sweep.eval) == len(data.train)
    assert not train & val and not val & held_out_eval
    assert train | val == {key(r) for r in data.train}
    # Stable: the same rows whatever the order they come in, so resumed and rerun sweeps agree.
    again = tuning.validation_indices(data.train.shuffle(seed=3), data.eval, 0.2, 16)
    assert {key(data.train.shuffle(seed=3)[i]) for i in again} == val


def test_too_few_training_rows_are_refused_before_anything_runs():
    plan, config = _plan("tune=lr", "sizes.train=20")
    with pytest.raises(UserError, match="too few"):
        tuning.check_split_sizes(plan, config)


def test_selection_takes_the_best_validation_score_and_records_where_it_came_from():
    plan, config = _plan("tune=lr")
    sweeps = tuning.sweep_specs(plan.specs, config)
    lora = sweeps[("rt_sentiment", "lora")]
    records = {lora[0].run_id: _ok(60.0),
               lora[1].run_id: _ok(70.0),
               lora[2].run_id: _ok(75.0)}
    assert tuning.select_factor(lora, records)[0] == 3.0
    records[lora[2].run_id] = _record("failed", None)
    assert tuning.select_factor(lora, records)[0] == 1.0
    records[lora[0].run_id].metrics["accuracy"] = 70.0  # a tie goes to the factor nearest the default
    assert tuning.select_factor(lora, records)[0] == 1.0
    chosen = tuning.selected_specs(plan.specs, sweeps, records, config)
    assert len(chosen) == len(plan.specs) and {s.seed for s in chosen} == {0, 1}
    by_method = {s.method: s for s in chosen}
    assert by_method["lora"].tune["selected_from"] == [s.run_id for s in lora]
    assert by_method["lora"].tune["factor"] == 1.0 and by_method["lora"].tune["role"] == "selected"
    assert by_method["ia3"].tune["factor_reason"].startswith("no sweep run succeeded")
    # The selected run's id does not depend on the recorded scores, only on the choice.
    rescored = dataclasses.replace(by_method["lora"], tune={**by_method["lora"].tune, "scores": {}})
    assert rescored.run_id == by_method["lora"].run_id


def test_records_say_their_role_and_tables_hide_sweeps(tmp_path):
    from peftbench.results import ResultStore, latest_records
    from peftbench.runs.spec import base_record

    plan, config = _plan("tune=lr")
    sweep = tuning.sweep_specs(plan.specs, config)[("rt_sentiment", "lora")][1]
    chosen = tuning.selected_specs(plan.specs, tuning.sweep_specs(plan.specs, config), {}, config)[0]
    store = ResultStore(tmp_path / "runs.jsonl")
    for spec in (sweep, chosen, plan.specs[0]):
        store.append({**base_record(spec), "status": "ok"})
    records = store.records()
    assert [r.role for r in records] == ["sweep", "selected", None]
    assert records[1].selected_from and records[1].tune["factor"] == 1.0
    assert len({r.config_id for r in records}) == 3  # sweep, selected and plain runs never pool as seeds
    assert [r.role for r in latest_records([store.path])] == ["selected", None]
    assert len(latest_records([store.path], include_sweep=True)) == 3


def test_into_reference_writes_only_into_a_checkouts_reference_folder(tmp_path):
    from peftbench.cli.run import reference_target

    with pytest.raises(UserError, match="source checkout"):
        reference_target(tmp_path / "elsewhere")
    folder = tmp_path / "results" / "reference"
    folder.mkdir(parents=True)
    with pytest.raises(UserError, match="source checkout"):
        reference_target(folder)  # no pyproject.toml two levels up: not a checkout
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert reference_target(folder) == folder.resolve()


def test_a_sweep_whose_edge_wins_continues_past_it_and_the_new_selection_supersedes(tmp_path):
    """constitution_part: LoRA-family methods won at x3, the grid's top. The sweep goes on (x9, x27) while
    the edge keeps winning; the selected run at the new rate replaces the earlier selection in tables."""
    from peftbench.results import ResultStore, latest_records
    from peftbench.runs.spec import base_record

    plan, config = _plan("tune=lr")
    sweep = tuning.sweep_specs(plan.specs, config)[("rt_sentiment", "lora")]
    scores = {0.33: 20.0, 1.0: 30.0, 3.0: 40.0}
    records = {s.run_id: _ok(scores[s.tune["factor"]]) for s in sweep}
    [nine] = tuning.extension_specs(sweep, records)
    assert nine.tune["factor"] == 9.0 and nine.tune["extension"] and nine.tune["role"] == "sweep"
    assert nine.train.learning_rate == pytest.approx(9 * sweep[1].train.learning_rate, rel=1e-5)
    assert nine.seed == sweep[0].seed and nine.run_id not in {s.run_id for s in sweep}
    records[nine.run_id] = _ok(45.0)
    assert tuning.extension_specs([*sweep, nine], records, most=1) == []  # a pilot's budget: one step past
    [twenty_seven] = tuning.extension_specs([*sweep, nine], records)
    assert twenty_seven.tune["factor"] == 27.0
    records[twenty_seven.run_id] = _ok(50.0)
    assert tuning.extension_specs([*sweep, nine, twenty_seven], records) == []  # at most MAX_EXTENSIONS
    records[twenty_seven.run_id].metrics["accuracy"] = 44.0
    assert tuning.extension_specs([*sweep, nine, twenty_seven], records) == []  # the edge no longer wins
    records[sweep[2].run_id].metrics["accuracy"] = 30.0  # x3 ties x1: x1 is chosen, nothing to extend
    assert tuning.extension_specs(sweep, records) == []
    records[sweep[0].run_id].metrics["accuracy"] = 35.0  # the low edge wins: x0.11 next
    assert [s.tune["factor"] for s in tuning.extension_specs(sweep, records)] == [pytest.approx(0.11, rel=0.02)]

    # The earlier selection (x3) and the new one (x9) of the same seed: only the last recorded counts.
    records[sweep[0].run_id].metrics["accuracy"] = 20.0
    records[sweep[2].run_id].metrics["accuracy"] = 40.0
    lora_specs = [s for s in plan.specs if s.method == "lora"]
    groups = {("rt_sentiment", "lora"): sweep}
    before = tuning.selected_specs(lora_specs, groups, records, config)
    after = tuning.selected_specs(lora_specs, {("rt_sentiment", "lora"): [*sweep, nine]}, records, config)
    assert [s.tune["factor"] for s in before] == [3.0, 3.0] and [s.tune["factor"] for s in after] == [9.0, 9.0]
    store = ResultStore(tmp_path / "runs.jsonl")
    for spec in [*before, *after]:
        store.append({**base_record(spec), "status": "ok"})
    kept = latest_records([store.path])
    assert sorted((r.seed, r.tune["factor"]) for r in kept) == [(0, 9.0), (1, 9.0)]


def test_rates_tied_at_the_majority_class_are_told_apart_by_how_much_they_learned():
    """rt_sentiment at 60 steps: DoRA scored 62.5% (the majority) at every rate. A tie on accuracy goes to the
    lower final training loss, not blindly to x1 — and if that is the edge, the sweep goes on past it."""
    plan, config = _plan("tune=lr")
    sweep = tuning.sweep_specs(plan.specs, config)[("rt_sentiment", "lora")]
    losses = {0.33: 0.69, 1.0: 0.68, 3.0: 0.61}
    records = {s.run_id: _ok(62.5, final_train_loss=losses[s.tune["factor"]]) for s in sweep}
    factor, scores = tuning.select_factor(sweep, records)
    assert factor == 3.0 and set(scores.values()) == {62.5}
    assert [s.tune["factor"] for s in tuning.extension_specs(sweep, records)] == [9.0]
    records[sweep[2].run_id] = _ok(62.5, final_train_loss=float("nan"))  # a diverged rate never wins the tie
    assert tuning.select_factor(sweep, records)[0] == 1.0


def test_retry_failed_reruns_failed_sweep_runs_too(tmp_path, cli):
    """`--retry-failed` with `tune=lr` reruns a failed sweep run (it did not, before: the tuned driver ran every
    phase without it), and each new record replaces the failed one."""
    import json

    from peftbench.runs.spec import base_record

    args = ["run", "suite=smoke", "tasks=[rt_sentiment]", "methods=[lora]", "seeds=[0]", "sizes.train=40",
            "sizes.eval=8", "train.max_steps=2", "tune=lr", "--no-progress", "--results", str(tmp_path)]
    overrides = parse_overrides([a for a in args[1:] if "=" in a and not a.startswith("-")])
    plan = build_plan(overrides)
    sweep = tuning.sweep_specs(plan.specs, tuning.parse_tune("lr", overrides.tune))[("rt_sentiment", "lora")]
    runs = tmp_path / "smoke" / "runs.jsonl"
    runs.parent.mkdir(parents=True)
    runs.write_text("".join(json.dumps({**base_record(s), "status": "failed", "error": "made up"}) + "\n"
                            for s in sweep))
    code, out, err = cli(*args, "--retry-failed")
    assert code == 0, out + err
    records = [json.loads(line) for line in runs.read_text().splitlines()]
    assert [r["role"] for r in records][:3] == ["sweep"] * 3 and records[-1]["role"] == "selected"
    assert all(r["status"] == "ok" for r in records) and len({r["run_id"] for r in records}) == len(records)


def test_without_confirm_the_sweep_is_all_that_runs_and_its_best_run_is_the_selection(tmp_path, monkeypatch):
    """A pilot's `tune=lr` (confirm off): the sweep and its extension run, no run repeats the selected rate, and
    the sweep's best record (what the pilot's verdict reads) is the one `select_factor` would have rerun."""
    from peftbench.record import RunRecord
    from peftbench.results import ResultStore, latest_records
    from peftbench.runs import runner
    from peftbench.runs.spec import base_record

    plan, config = _plan("tune=lr", "methods=[lora]")
    scores = {0.33: 50.0, 1.0: 60.0, 3.0: 70.0, 9.0: 65.0}
    ran: list[str] = []

    def fake_run_plan(plan, results_root, **_):
        store = ResultStore.for_suite(plan.suite.name, results_root)
        records = []
        for spec in plan.specs:
            ran.append(spec.tune["role"])
            record = RunRecord.from_dict({**base_record(spec), "status": "ok",
                                          "metrics": {"accuracy": scores[spec.tune["factor"]]}})
            store.append(record)
            records.append(record)
        return runner.RunSummary(store.path, records=records)

    monkeypatch.setattr(runner, "run_plan", fake_run_plan)
    runner.run_tuned(plan, dataclasses.replace(config, extensions=1, confirm=False), tmp_path, show_progress=False)
    assert ran == ["sweep"] * 4  # x1/3, x1, x3, then x9 past the winning edge; nothing at the selected rate
    sweep = latest_records([ResultStore.for_suite(plan.suite.name, tmp_path).path], include_sweep=True)
    best = tuning.best_sweep_record(sweep, "accuracy")
    assert best is not None and best.tune["factor"] == 3.0
    ran.clear()
    runner.run_tuned(plan, config, tmp_path, show_progress=False)  # confirm on: the selected rate on both seeds
    assert ran.count("selected") == 2


def test_progress_names_each_sweep_run_by_its_rate():
    """Two runs of one method at different rates in flight side by side must not read as the same run."""
    plan, config = _plan("tune=lr")
    sweep = tuning.sweep_specs(plan.specs, config)[("rt_sentiment", "lora")]
    labels = [s.label() for s in sweep]
    assert len(set(labels)) == 3 and all(f"/lr{s.train.learning_rate:.3g}/" in s.label() for s in sweep)
    assert plan.specs[0].label() == f"rt_sentiment/{plan.specs[0].method}/seed0"
