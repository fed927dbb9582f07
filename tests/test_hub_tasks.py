"""Hub-backed tasks (LEDGAR, CaseHOLD, PubMedQA, Financial PhraseBank, XSum, BillSum, WMT14) on local copies
of the same shape: a directory laid out like the hub repository (README `configs:` + Parquet files with the
hub's features: ClassLabel ints, nested dicts, lists, Translation), passed to the same
`datasets.load_dataset(id, config, split=...)` call a user with internet makes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from peftbench.data import load_task_data
from peftbench.suites import load_suite
from peftbench.tasks import TASK_KINDS

SENTENCE = "the court held that a party may recover damages when the contract was breached by the other side"
WORDS = SENTENCE.split(" ")


def _text(i: int, n: int = 12) -> str:
    return " ".join(WORDS[(i + k) % len(WORDS)] for k in range(n))


def _rows(name: str, n: int) -> tuple[dict, object]:
    """Columns and features of the hub dataset `name` (from its card), filled with n rows."""
    import datasets as ds

    if name == "ledgar":
        names = ["Governing Laws", "Notices", "Severability"]
        return ({"text": [_text(i) for i in range(n)], "label": [i % 3 for i in range(n)]},
                ds.Features({"text": ds.Value("string"), "label": ds.ClassLabel(names=names)}))
    if name == "case_hold":
        return ({"context": [_text(i, 30) for i in range(n)], "endings": [[_text(i + k, 6) for k in range(5)]
                                                                           for i in range(n)],
                 "label": [i % 5 for i in range(n)]},
                ds.Features({"context": ds.Value("string"), "endings": ds.List(ds.Value("string")),
                             "label": ds.ClassLabel(names=["0", "1", "2", "3", "4"])}))
    if name == "pubmedqa":
        return ({"pubid": list(range(n)), "question": [f"Does {WORDS[i % 9]} help?" for i in range(n)],
                 "context": [{"contexts": [_text(i), _text(i + 1)], "labels": ["BACKGROUND", "RESULTS"],
                              "meshes": ["Humans"]} for i in range(n)],
                 "long_answer": [_text(i, 8) for i in range(n)],
                 "final_decision": [["yes", "no", "maybe"][i % 3] for i in range(n)]},
                ds.Features({"pubid": ds.Value("int32"), "question": ds.Value("string"),
                             "context": {"contexts": ds.List(ds.Value("string")),
                                         "labels": ds.List(ds.Value("string")),
                                         "meshes": ds.List(ds.Value("string"))},
                             "long_answer": ds.Value("string"), "final_decision": ds.Value("string")}))
    if name == "financial_phrasebank":
        return ({"sentence": [_text(i) for i in range(n)], "label": [i % 3 for i in range(n)]},
                ds.Features({"sentence": ds.Value("string"),
                             "label": ds.ClassLabel(names=["negative", "neutral", "positive"])}))
    if name == "xsum":
        return ({"document": [_text(i, 40) for i in range(n)], "summary": [_text(i, 8) for i in range(n)],
                 "id": [str(i) for i in range(n)]},
                ds.Features({"document": ds.Value("string"), "summary": ds.Value("string"), "id": ds.Value("string")}))
    if name == "billsum":
        return ({"text": [_text(i, 40) for i in range(n)], "summary": [_text(i, 8) for i in range(n)],
                 "title": [_text(i, 4) for i in range(n)]},
                ds.Features({"text": ds.Value("string"), "summary": ds.Value("string"), "title": ds.Value("string")}))
    if name == "wmt14_en_fr":
        return ({"translation": [{"en": _text(i, 6), "fr": f"la cour {i}"} for i in range(n)]},
                ds.Features({"translation": ds.Translation(languages=["fr", "en"])}))
    raise KeyError(name)


def _local_copy(root: Path, task) -> Path:
    """A local repository shaped like the hub one: every split `task` asks for, under its config."""
    import datasets as ds

    config = task.data.get("config") or "default"
    requested = task.data.get("splits") or {"train": "train", "eval": "validation"}
    hub_splits = {s.split("[")[0] for s in requested.values()}
    files = []
    for split in sorted(hub_splits):
        columns, features = _rows(task.name, 20)
        path = root / config / f"{split}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.Dataset.from_dict(columns, features=features).to_parquet(str(path))
        files.append(f"  - split: {split}\n    path: {config}/{split}.parquet")
    (root / "README.md").write_text(f"---\nconfigs:\n- config_name: {config}\n  data_files:\n" + "\n".join(files)
                                    + "\n---\n")
    return root


HUB_TASKS = [(suite, task.name) for suite in ("legal", "medical", "finance", "summarization", "translation")
             for task in load_suite(suite).hub_tasks]


def test_every_domain_suite_declares_a_hub_variant():
    assert {suite for suite, _ in HUB_TASKS} == {"legal", "medical", "finance", "summarization", "translation"}


@pytest.mark.parametrize("suite, name", HUB_TASKS)
def test_hub_task_loads_and_prepares_from_a_local_copy_of_the_same_shape(tmp_path, suite, name):
    from peftbench.models.catalogue import architecture_family, resolve_model
    from peftbench.models.loading import load_config, load_tokenizer

    task = load_suite(suite).task(name)
    assert task.data["source"] == "hub" and name not in [t.name for t in load_suite(suite).tasks]  # not default
    local = dataclasses.replace(task, data={**task.data, "id": str(_local_copy(tmp_path, task)), "revision": None})
    data = load_task_data(local)
    assert len(data.train) > 0 and len(data.eval) > 0
    if "[" in str(task.data.get("splits")):  # one hub split, sliced: train and eval must not overlap
        assert len(data.train) + len(data.eval) == 20
    kind = TASK_KINDS[task.kind]
    row = data.train[0]
    if task.kind == "classification":
        assert isinstance(row[task.fields["label"]], str)  # ClassLabel ints became names
        assert set(data.train[task.fields["label"]]) <= set(kind.label_names(local, data.train))
        assert isinstance(row[task.fields["text"]], str) and row[task.fields["text"]].strip()
    if task.kind == "generation":
        assert isinstance(row[task.fields["source"]], str) and isinstance(row[task.fields["target"]], str)
    config, _, _ = load_config(task.model)
    tokenizer = load_tokenizer(resolve_model(task.model)[0], architecture_family(config))
    prepared = kind.prepare(local, tokenizer, data.train, data.eval)
    assert prepared is not None


def test_pubmedqa_joins_question_and_abstract(tmp_path):
    task = load_suite("medical").task("pubmedqa")
    local = dataclasses.replace(task, data={**task.data, "id": str(_local_copy(tmp_path, task)), "revision": None})
    row = load_task_data(local).train[0]
    text = row["question + context.contexts"]
    assert text.startswith("Does ") and WORDS[0] in text.split("\n", 1)[1]


def test_hub_task_runs_end_to_end_from_a_local_copy(tmp_path, cli):
    """A user's `tasks=[financial_phrasebank]` run, with the hub id swapped for the local copy."""
    import yaml

    task = load_suite("finance").task("financial_phrasebank")
    suite_file = tmp_path / "fin.yaml"
    raw = {"name": "fin", "model": "minilm", "methods": ["lora"],
           "tasks": [{**{k: v for k, v in dataclasses.asdict(task).items() if v not in (None, (), {}, "")},
                      "data": {**task.data, "id": str(_local_copy(tmp_path / "fpb", task)), "revision": None},
                      "labels": list(task.labels), "metrics": list(task.metrics)}]}
    suite_file.write_text(yaml.safe_dump(raw))
    code, _, err = cli("run", f"suite={suite_file}", "train.max_steps=1", "--no-progress",
                       "--results", str(tmp_path / "res"))
    assert code == 0, err
    record = json.loads((tmp_path / "res" / "fin" / "runs.jsonl").read_text())
    assert record["status"] == "ok" and record["metrics"]["accuracy"] >= 0


def test_unreachable_hub_dataset_is_one_clear_line(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    code, out, err = cli("run", "suite=finance", "tasks=[financial_phrasebank]", "--results", str(tmp_path))
    assert code == 2 and "cannot load hub dataset 'takala/financial_phrasebank'" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "finance").exists()
