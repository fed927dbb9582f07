"""Bad input: one clear line on stderr, exit code 2, no traceback, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO

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


# Issue 13: every bad value is refused when the plan is built — one line, exit 2, nothing written.
@pytest.mark.parametrize("override, expected", [
    ("model=nosuchmodel", "not in the local Hugging Face cache"),
    ("model=org/nosuchmodel", "not in the local Hugging Face cache"),
    ("model=", "model must be"),
    ("model=a b/c", "unknown model"),
    ("device=cudaXYZ", "device must be cpu, cuda or cuda:N"),
    ("seeds=99999999999999999999", "each seed must be an integer from 0 to 4294967295"),
    ("seeds=[-1]", "each seed must be an integer"),
    ("train.learning_rate=.inf", "train.learning_rate must be a finite number > 0"),
    ("train.learning_rate=.nan", "train.learning_rate must be a finite number > 0"),
    ("train.warmup_ratio=abc", "train.warmup_ratio must be a finite number in [0, 1]"),
    ("train.warmup_ratio=-1", "train.warmup_ratio must be a finite number in [0, 1]"),
    ("train.gradient_checkpointing=maybe", "train.gradient_checkpointing must be true or false"),
    ("train.lr_multiplier=true", "train.lr_multiplier must be a finite number > 0"),
    ("train.max_grad_norm=-1", "train.max_grad_norm must be a finite number >= 0"),
    ("timeout=.nan", "timeout must be a number of seconds"),
    ("timeout=.inf", "timeout must be a number of seconds"),
    ("trust_remote_code=fp16", "trust_remote_code must be true or false"),
    ("trust_remote_code='false'", "trust_remote_code must be true or false"),
    ("methods.lora.r=-1", "methods.lora.r must be an integer from 1"),
    ("methods.lora.r=0", "methods.lora.r must be an integer from 1"),
    ("methods.lora.r=abc", "methods.lora.r must be an integer"),
    ("methods.lora.lora_dropout=5", "methods.lora.lora_dropout must be a probability in [0, 1)"),
    ("methods.lora.lora_dropout=-149793", "methods.lora.lora_dropout must be a probability in [0, 1)"),
    ("methods.lora.use_dora=ü", "methods.lora.use_dora must be true or false"),
    ("methods.lora.target_modules=[1, 2]", "methods.lora.target_modules must be a string or a list of strings"),
    ("methods.lora.target_modules=[nonexistent]", "methods.lora cannot be applied to minilm"),
    ("methods.lora.learning_rate=.nan", "methods.lora.learning_rate must be a finite number > 0"),
])
def test_bad_values_refused_before_anything_runs(cli, tmp_path, override, expected):
    code, _, err = cli("run", "suite=smoke", "tasks=[rt_sentiment]", "methods=[lora]", override,
                       "--results", str(tmp_path / "res"))
    assert code == 2 and expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "res").exists()


def test_cuda_without_a_cuda_device(cli, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = cli("run", "suite=smoke", "device=cuda", "--results", str(tmp_path / "res"))
    assert code == 2 and "no CUDA device is available" in err and not (tmp_path / "res").exists()


def test_prompt_tuning_past_the_position_table(cli, tmp_path):
    # MiniLM (BERT) has 512 positions; max_length 64 plus 480 virtual tokens would index past them.
    code, _, err = cli("run", "suite=smoke", "tasks=[rt_sentiment]", "methods=[prompt_tuning]",
                       "methods.prompt_tuning.num_virtual_tokens=480", "--results", str(tmp_path / "res"))
    assert code == 2 and "needs 544 positions, but minilm has 512" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "res").exists()


def test_control_characters_are_escaped_in_the_message(cli, tmp_path):
    code, _, err = cli("run", "suite=smoke", "device=cpu\r\nINJECTED\x1b[2J", "--results", str(tmp_path / "res"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "\r" not in err and "\x1b" not in err and "\\r\\n" in err


def _suite_text(tmp_path: Path, task_extra: str = "", top: str = "name: bad\n", rows=None) -> Path:
    rows = rows if rows is not None else [{"text": "fine film", "label": "pos"}, {"text": "dull", "label": "neg"}]
    for split in ("train", "eval"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "s.yaml"
    path.write_text(f"{top}model: minilm\nmethods: [lora]\ntasks:\n  - name: t\n    kind: classification\n"
                    f"    data: {{source: local, files: {{train: train.jsonl, eval: eval.jsonl}}}}\n{task_extra}")
    return path


@pytest.mark.parametrize("top, task_extra, expected", [
    ("name: ../../../../outside\n", "", "suite name '../../../../outside' is not valid"),
    ("name: /abs/path\n", "", "suite name '/abs/path' is not valid"),
    ("name: ''\n", "", "suite name '' is not valid"),
    ("name: reference\n", "", "is not valid"),
    ("name: ok\n", "    fields: text\n", "fields must be a mapping"),
    ("name: ok\n", "    labels: 5\n", "labels must be a non-empty list"),
    ("name: ok\n", "    max_length: abc\n", "max_length must be a positive integer"),
    ("name: ok\n", "    max_length: 0\n", "max_length must be a positive integer"),
    ("name: ok\n", "    sizes: {train: abc}\n", "sizes.train must be a positive integer"),
    ("name: ok\n", "    sizes: {train: -5}\n", "sizes.train must be a positive integer"),
    ("name: ok\n", "    train: [1, 2]\n", "train must be a mapping"),
    ("name: ok\ntrain: {warmup_ratio: 2}\n", "", "train.warmup_ratio must be a finite number in [0, 1]"),
    ("name: ok\nseeds: [1.5]\n", "", "each seed must be an integer"),
    ("name: ok\n", "    prompt: 'x {nosuch}'\n", "prompt placeholders ['nosuch'] are not fields"),
    ("name: ok\n", "    metrics: [bleu]\n", "metrics must be a list drawn from accuracy, macro_f1"),
    ("name: ok\n", "    labels: [pos]\n", "labels 'neg' are not in the declared label set"),
])
def test_suite_yaml_errors(cli, tmp_path, top, task_extra, expected):
    path = _suite_text(tmp_path, task_extra, top)
    code, _, err = cli("run", f"suite={path}", "--results", str(tmp_path / "res"))
    assert code == 2 and expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "res").exists() and not (tmp_path.parent / "outside").exists()


def test_shipped_source_without_a_path(cli, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ntasks:\n  - {name: t, kind: classification, data: {source: shipped}}\n")
    code, _, err = cli("run", f"suite={path}", "--results", str(tmp_path / "res"))
    assert code == 2 and "data.path" in err and not (tmp_path / "res").exists()


@pytest.mark.parametrize("rows, expected", [
    ([{"text": "fine", "label": "pos"}, {"text": None, "label": "neg"}], "has 1 empty (null) value(s)"),
    ([{"text": "fine", "label": "pos"}, {"text": "dull", "label": None}], "has 1 empty (null) value(s)"),
])
def test_null_values_in_data(cli, tmp_path, rows, expected):
    path = _suite_text(tmp_path, rows=rows)
    code, _, err = cli("run", f"suite={path}", "--results", str(tmp_path / "res"))
    assert code == 2 and expected in err and not (tmp_path / "res").exists()


def test_latin1_data_file(cli, tmp_path):
    path = _suite_text(tmp_path)
    for split in ("train", "eval"):
        (tmp_path / f"{split}.jsonl").write_bytes('{"text": "caf\u00e9", "label": "pos"}\n'.encode("latin-1"))
    code, _, err = cli("run", f"suite={path}", "--results", str(tmp_path / "res"))
    assert code == 2 and "is not UTF-8" in err and not (tmp_path / "res").exists()


@pytest.mark.parametrize("argv, expected", [
    (["results", "suite=smoke", "--reference", "--format", "csv", "-o", "{tmp}/missing/x.csv"], "does not exist"),
    (["results", "suite=smoke", "--reference", "--format", "csv", "-o", "{tmp}"], "is a folder"),
    (["results", "suite=smoke", "--reference", "--format", "csv", "-o", "/proc/x.csv"], "not writable"),
    (["results", "suite=../../x"], "suite '../../x' is not valid"),
    (["report", "suite=../../x", "--no-estimates"], "suite '../../x' is not valid"),
    (["report", "suite=smoke", "--reference", "--no-estimates", "-o", "/proc/x.html"], "is not a writable folder"),
    (["estimate", "--model", "minilm", "--method", "lora", "--task-kind", "classification", "methods.lora.r=-1"],
     "methods.lora.r must be an integer from 1"),
    (["estimate", "--model", "minilm", "--method", "lora", "--task-kind", "classification", "methods.lora.r=abc"],
     "methods.lora.r must be an integer"),
    (["estimate", "--model", "minilm", "--method", "lora", "--task-kind", "classification", "--num-labels", "-1"],
     "--num-labels must be an integer from 1"),
    (["recommend", "--task", "classification", "--epochs", "nan"], "--epochs must be a finite number"),
    (["recommend", "--task", "classification", "--max-hours", "nan"], "--max-hours must be a finite number"),
    (["recommend", "--task", "classification", "--max-adapter-mb", "-5"], "--max-adapter-mb must be a finite"),
    (["recommend", "--task", "classification", "--results", "/nonexistent"], "--results '/nonexistent': no such"),
])
def test_other_commands_refuse_bad_values(cli, tmp_path, monkeypatch, argv, expected):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = cli(*[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert code == 2 and expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_trust_remote_code_only_from_a_real_boolean_elsewhere():
    """estimate and recommend never load a model's code: no trust_remote_code=True outside a run's spec."""
    import re

    source = REPO / "peftbench"
    hits = [f"{p.relative_to(REPO)}:{n}" for p in source.rglob("*.py")
            for n, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"trust_remote_code\s*=\s*True", line)]
    assert hits == []
