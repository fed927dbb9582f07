"""Bad input: one clear line on stderr, exit code 2, no traceback, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SUITE_TEMPLATE = """
name: bad
model: minilm
methods: [lora]
tasks:
  - name: t
    kind: classification
    data: {{source: local, files: {{train: {train}, eval: {eval}}}}}
    fields: {{text: text, label: label}}
"""


def _suite(tmp_path: Path, rows_train: list[dict], rows_eval: list[dict] | None = None) -> Path:
    for name, rows in (("train", rows_train), ("eval", rows_eval if rows_eval is not None else rows_train)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "bad.yaml"
    path.write_text(SUITE_TEMPLATE.format(train=tmp_path / "train.jsonl", eval=tmp_path / "eval.jsonl"))
    return path


@pytest.mark.parametrize("argv, expected", [
    (["run", "suite=nosuch"], "unknown suite 'nosuch'"),
    (["run", "suite=smoke", "methods=[lora,nosuch]"], "unknown method 'nosuch'"),
    (["run", "suite=smoke", "model=./no/such/model"], "unknown model"),
    (["run", "suite=smoke", "frobnicate=3"], "unknown override key 'frobnicate'"),
    (["run", "suite=smoke", "train.nosuch=3"], "unknown training key 'train.nosuch'"),
    (["run", "suite=smoke", "train.max_steps=abc"], "train.max_steps must be a positive integer"),
    (["run", "suite=smoke", "seeds=[x]"], "seeds must be a int"),
    (["run", "suite=smoke", "methods.lora.nosuch=1", "methods=[lora]"], "has no hyper-parameter 'nosuch'"),
    (["run", "suite=smoke", "tasks=[nosuch]"], "has no task 'nosuch'"),
    (["run", "suite=smoke", "scale=huge"], "scale must be default or full"),
    (["run", "suite=smoke", "jobs=0"], "jobs must be a positive integer or auto"),
    (["run", "noequals"], "must look like key=value"),
    (["results", "suite=nosuch"], "no results for suite 'nosuch'"),
])
def test_bad_input_is_one_line_exit_2(cli, tmp_path, argv, expected):
    code, out, err = cli(*argv, *(["--results", str(tmp_path / "res")] if argv[0] in ("run", "results") else []))
    assert code == 2
    assert expected in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "res").exists()


def test_malformed_yaml(cli, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\ntasks: [\n  - {name: x\n")
    code, _, err = cli("run", f"suite={path}", "--results", str(tmp_path / "res"))
    assert code == 2 and "malformed YAML" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "res").exists()


def test_dataset_without_declared_columns(cli, tmp_path):
    path = _suite(tmp_path, [{"sentence": "fine film", "label": "pos"}])
    code, _, err = cli("run", f"suite={path}", "--results", str(tmp_path / "res"))
    assert code == 2 and "lacks declared column(s) ['text']" in err
    assert not (tmp_path / "res").exists()


def test_empty_dataset(cli, tmp_path):
    path = _suite(tmp_path, [{"text": "a", "label": "x"}], rows_eval=[])
    code, _, err = cli("run", f"suite={path}", "--results", str(tmp_path / "res"))
    assert code == 2 and ("empty" in err or "cannot" in err)
    assert not (tmp_path / "res").exists()


def test_unknown_command_is_exit_2(cli):
    code, _, err = cli("frobnicate")
    assert code == 2 and "invalid choice" in err
