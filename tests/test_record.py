"""Run records are typed and versioned: every older shape on disk reads (migrated), new records carry the
current schema version, and nothing is lost on a round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peftbench import identity
from peftbench.record import SCHEMA_VERSION, RunRecord
from peftbench.results import ResultStore

SAMPLES = Path(__file__).resolve().parent / "data" / "records"
# One committed sample line per older shape (see peftbench.record's module doc), and what migration fills in.
SHAPES = {
    "v1_first_no_machine_id": {"machine_id": None, "role": None, "gradient_accumulation_steps": 1,
                               "micro_batch_size": 8, "effective_batch_size": 8, "adapter_saved": True},
    "v1_machine_id_no_config_id": {"role": None, "trust_remote_code": False, "gradient_accumulation_steps": 1,
                                   "micro_batch_size": 8, "effective_batch_size": 8},
    "v1_tuned_with_batch_fields": {"role": "selected"},
    "v1_skipped": {"status": "skipped", "micro_batch_size": None, "effective_batch_size": None},
}


def test_every_older_shape_has_a_committed_sample():
    assert sorted(p.stem for p in SAMPLES.glob("*.jsonl")) == sorted(SHAPES)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_an_older_record_reads_migrated_and_round_trips_unchanged(shape, capsys):
    path = SAMPLES / f"{shape}.jsonl"
    stored = json.loads(path.read_text())
    [record] = ResultStore(path).records()
    assert capsys.readouterr().err == ""  # an old record is read, not skipped
    assert "schema_version" not in stored and record.schema_version == 1 < SCHEMA_VERSION
    assert record.world_size == 1 and record.gradient_checkpointing is False
    assert record.config_id == identity.config_id(
        suite=stored["suite"], task=stored["task"], model=stored["model"], method=stored["method"],
        hyperparameters=stored["hyperparameters"], scale=stored["scale"], data_fingerprint=stored["data_fingerprint"],
        train_config=stored["train_config"], role=stored.get("role"))
    for name, value in SHAPES[shape].items():
        assert getattr(record, name) == value, name
    assert record.to_dict() == stored  # migration fills attributes, never the stored shape
    assert record.to_json() == path.read_text().rstrip("\n")


def test_a_new_record_is_stamped_with_the_current_version_and_reads_back_equal(tmp_path):
    stored = json.loads((SAMPLES / "v1_tuned_with_batch_fields.jsonl").read_text())
    store = ResultStore(tmp_path / "runs.jsonl")
    store.append(stored)  # a worker's fields: a record made now
    line = json.loads(store.path.read_text())
    assert line["schema_version"] == SCHEMA_VERSION and {k: v for k, v in line.items() if k != "schema_version"} \
        == stored
    [record] = store.records()
    assert record == RunRecord.from_dict(line) and record.to_dict() == line
    store.replace(record.replaced(status="failed", error="again"))
    [again] = store.records()
    assert (again.status, again.error, again.run_id) == ("failed", "again", record.run_id)


def test_a_record_from_a_newer_version_is_read_with_one_warning_and_keeps_what_it_does_not_know(tmp_path, capsys):
    stored = {**json.loads((SAMPLES / "v1_skipped.jsonl").read_text()), "schema_version": SCHEMA_VERSION + 7,
              "a_field_from_the_future": {"x": 1}}
    path = tmp_path / "runs.jsonl"
    path.write_text(json.dumps(stored) + "\n" + json.dumps({**stored, "run_id": "other"}) + "\n")
    first, second = ResultStore(path).records()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"schema version {SCHEMA_VERSION + 7}" in err
    assert first.extra == {"a_field_from_the_future": {"x": 1}} and first.to_dict() == stored


@pytest.mark.parametrize("damage, why", [
    ({"schema_version": "2"}, "schema_version is not an integer"),
    ({"tune": "lr"}, "tune is a JSON str, not an object"),
    ({"world_size": -1}, "world_size is -1, not a count"),
    ({"run_id": None}, "no run_id"),
])
def test_a_malformed_record_is_skipped_and_said_not_migrated(tmp_path, capsys, damage, why):
    stored = json.loads((SAMPLES / "v1_tuned_with_batch_fields.jsonl").read_text())
    path = tmp_path / "runs.jsonl"
    path.write_text(json.dumps({**stored, **damage}) + "\n" + json.dumps(stored) + "\n")
    assert len(ResultStore(path).records()) == 1
    assert why in capsys.readouterr().err
    with pytest.raises(ValueError, match=why.split(" ")[0]):
        RunRecord.from_json(json.dumps({**stored, **damage}))


def test_readers_ask_the_record_not_its_keys():
    record = RunRecord.from_json((SAMPLES / "v1_tuned_with_batch_fields.jsonl").read_text())
    assert record.ok and not record.is_sweep and record.learning_rate == record.train_config["learning_rate"]
    assert record.primary_score == record.metrics[record.primary_metric()]
    assert record.peak_memory_bytes == record.memory["peak_rss_train_bytes"]
    assert record.recorded_on(str(record.machine_id)) and not record.recorded_on("elsewhere")


def test_a_run_spec_crosses_processes_as_one_json_and_keeps_its_id():
    from peftbench.overrides import parse_overrides
    from peftbench.runs.plan import build_plan
    from peftbench.runs.spec import RunSpec

    for extra in ([], ["gpus_per_run=2", "strategy=fsdp"]):
        [spec] = build_plan(parse_overrides(["suite=smoke", "tasks=[rt_sentiment]", "methods=[lora]", "seeds=[0]",
                                             *extra])).specs
        again = RunSpec.from_json(spec.to_json())
        assert again == spec and again.run_id == spec.run_id and again.config_id == spec.config_id


def test_skipping_the_after_training_measurements_travels_with_the_spec_and_keeps_the_run_id(monkeypatch):
    """`measure_after_training=false` (what a pilot sets) reaches every worker through the spec, Ray's included,
    and changes no run's identity: a pilot's runs resume under the same ids as a plain run of its suite."""
    from peftbench.errors import UserError
    from peftbench.overrides import parse_overrides
    from peftbench.runs.plan import build_plan
    from peftbench.runs.post_training import after_training
    from peftbench.runs.spec import RunSpec

    base = ["suite=smoke", "tasks=[rt_sentiment]", "methods=[lora]", "seeds=[0]"]
    monkeypatch.setenv("PEFTBENCH_POST_TRAINING", "1")
    [measured] = build_plan(parse_overrides(base)).specs
    [skipped] = build_plan(parse_overrides([*base, "measure_after_training=false"])).specs
    assert measured.measure_after_training and not skipped.measure_after_training
    assert skipped.run_id == measured.run_id and skipped.config_id == measured.config_id
    assert not RunSpec.from_json(skipped.to_json()).measure_after_training
    assert after_training(skipped, setup=None, fields={}) == {}  # nothing is loaded or measured
    monkeypatch.setenv("PEFTBENCH_POST_TRAINING", "0")  # the process-wide default
    assert not build_plan(parse_overrides(base)).specs[0].measure_after_training
    with pytest.raises(UserError, match="measure_after_training"):
        build_plan(parse_overrides([*base, "measure_after_training=maybe"]))
