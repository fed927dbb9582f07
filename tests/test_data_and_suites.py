"""Suites load and validate; shipped extracts match their fingerprints; every data source loads."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from peftbench.data import load_task_data
from peftbench.suites import available_suites, load_suite, suites_dir

DOMAIN_SUITES = ["legal", "medical", "finance", "summarization", "translation", "classification"]


def test_domain_suites_exist_with_two_tasks_each():
    assert set(DOMAIN_SUITES) <= set(available_suites())
    for name in DOMAIN_SUITES:
        assert len(load_suite(name).tasks) >= 2


@pytest.mark.parametrize("name", sorted(available_suites()))
def test_every_task_of_every_suite_loads_its_declared_columns(name):
    for task in load_suite(name).tasks:
        data = load_task_data(task)
        assert len(data.train) > 0 and len(data.eval) > 0
        assert len(data.train) <= task.sizes.get("train", len(data.train))
        if task.labels:
            assert {str(v) for v in data.train[task.fields["label"]]} <= set(task.labels)


def test_shipped_extracts_match_recorded_fingerprints():
    fingerprints = json.loads((suites_dir() / "data" / "fingerprints.json").read_text())
    assert len(fingerprints) >= 12
    for relative, expected in fingerprints.items():
        path = suites_dir() / "data" / relative
        assert hashlib.sha256(path.read_bytes()).hexdigest() == expected["sha256"], relative
        assert sum(1 for _ in path.open()) == expected["rows"], relative


def test_default_subset_is_deterministic_and_seed_independent():
    task = load_suite("smoke").task("rt_sentiment")
    assert load_task_data(task).fingerprint == load_task_data(task).fingerprint
    assert len(load_task_data(task, scale="full").train) > task.sizes["train"]


def _write_splits(folder: Path, fmt: str) -> dict[str, str]:
    import pandas as pd

    rows = [{"text": "a moving, funny film", "label": "positive"}, {"text": "dull and long", "label": "negative"}]
    frame = pd.DataFrame(rows)
    files = {}
    for split in ("train", "eval"):
        path = folder / f"{split}.{fmt}"
        {"csv": lambda p: frame.to_csv(p, index=False),
         "jsonl": lambda p: frame.to_json(p, orient="records", lines=True),
         "parquet": lambda p: frame.to_parquet(p)}[fmt](path)
        files[split] = str(path)
    return files


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_local_files_load(tmp_path, fmt):
    from peftbench.suites import TaskSpec

    task = TaskSpec(name="t", kind="classification", data={"source": "local", "files": _write_splits(tmp_path, fmt)},
                    fields={"text": "text", "label": "label"}, model="minilm", sizes={})
    data = load_task_data(task)
    assert data.train["label"] == ["positive", "negative"]


def test_hub_source_uses_datasets_load_dataset(tmp_path):
    """The hub code path is `datasets.load_dataset(id, ...)`; a local dataset directory stands in for a hub id."""
    from peftbench.suites import TaskSpec

    (tmp_path / "train.jsonl").write_text('{"text": "good", "label": "positive"}\n')
    (tmp_path / "validation.jsonl").write_text('{"text": "bad", "label": "negative"}\n')
    task = TaskSpec(name="t", kind="classification", data={"source": "hub", "id": str(tmp_path)},
                    fields={"text": "text", "label": "label"}, model="minilm", sizes={})
    data = load_task_data(task)
    assert data.train["text"] == ["good"] and data.eval["text"] == ["bad"]


def test_model_from_local_directory_runs(tmp_path, cli, minilm_dir):
    """`model=PATH` takes any transformers directory: the same code path as a hub id, without the network."""
    import shutil

    local = tmp_path / "my-encoder"
    shutil.copytree(minilm_dir, local)
    code, out, err = cli("run", "suite=smoke", "tasks=[rt_sentiment]", "methods=[lora]", f"model={local}",
                         "train.max_steps=1", "--no-progress", "--results", str(tmp_path / "res"))
    assert code == 0, err
    record = json.loads((tmp_path / "res" / "smoke" / "runs.jsonl").read_text())
    assert record["status"] == "ok" and record["model_source"] == "local"
