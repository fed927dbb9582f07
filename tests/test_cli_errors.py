"""Bad input: one clear line on stderr, exit code 2, no traceback, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO

# A 420-byte YAML value that expands to 9**10 items ("billion laughs") where aliases are followed.
LAUGHS = "[" + ", ".join(["&a0 [x,x,x,x,x,x,x,x,x]"] + [f"&a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]"
                                                        for i in range(1, 10)]) + "]"

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


# Every bad value is refused when the plan is built — one line, exit 2, nothing written.
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
    ("methods.lora.learning_rate=1e400", "methods.lora.learning_rate must be a finite number > 0"),
    ("train.max_steps=1e23", "train.max_steps must be a positive integer of at most 10000000"),
    ("train.max_steps=100000000000000000000000", "train.max_steps must be a positive integer of at most 10000000"),
    ("methods.lora.modules_to_save=[nosuch]", "modules_to_save ['nosuch'] match no module of the model"),
    ("methods.lora.modules_to_save=[classifier, nosuch]", "modules_to_save ['nosuch'] match no module"),
    (f"methods={LAUGHS}", "YAML anchors (&a0) are not allowed"),
    ("seeds=" + "9" * 5000, "a value cannot be read"),
    ("methods=" + "[" * 5000 + "]" * 5000, "nested more than 32 levels deep"),
    ("methods={a: 1, a: 2}", "duplicate key 'a'"),
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
    (["report", "suite=smoke", "--reference", "--no-estimates", "-o", "{tmp}/" + "x" * 300 + ".html"],
     "longer than 255 bytes"),
    (["report", "suite=smoke", "--reference", "--no-estimates", "-o", "{tmp}/link.html"], "links to '/proc'"),
    (["report", "all", "--reference", "--no-estimates", "-o", "{tmp}/" + "x" * 300], "longer than 255 bytes"),
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
    (tmp_path / "link.html").symlink_to("/proc/nonexistent.html")  # the write would follow it
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


def test_numbers_in_scientific_notation_reach_every_numeric_key():
    """YAML 1.1 read `1e-4` (no dot) as a string; every numeric key takes it now, whole numbers (`8e0`) as ints."""
    from peftbench.overrides import parse_overrides
    from peftbench.runs.plan import build_plan
    from peftbench.runs.tuning import parse_tune

    base = ["suite=smoke", "tasks=[rt_sentiment]", "methods=[lora]"]
    plan = build_plan(parse_overrides(base + [
        "train.learning_rate=1e-4", "train.lr_multiplier=2E0", "train.weight_decay=1e-2", "train.warmup_ratio=5e-2",
        "train.max_grad_norm=5e-1", "train.max_steps=2e1", "train.batch_size=4e0", "train.eval_batch_size=8E0",
        "train.gradient_accumulation_steps=2e0", "train.threads=1e0", "timeout=6e1", "seeds=[1e0,2E0]",
        "sizes.train=16e0", "sizes.eval=8e0", "jobs=1e0", "methods.lora.r=4e0", "methods.lora.lora_alpha=16e0",
        "methods.lora.lora_dropout=5e-2"]))
    spec = plan.specs[0]
    assert {k: getattr(spec.train, k) for k in ("learning_rate", "lr_multiplier", "weight_decay", "warmup_ratio",
                                       "max_grad_norm", "max_steps", "batch_size", "eval_batch_size",
                                       "gradient_accumulation_steps", "threads")} == {
        "learning_rate": 1e-4, "lr_multiplier": 2, "weight_decay": 0.01, "warmup_ratio": 0.05, "max_grad_norm": 0.5,
        "max_steps": 20, "batch_size": 4, "eval_batch_size": 8, "gradient_accumulation_steps": 2, "threads": 1}
    assert plan.timeout == 60 and plan.jobs == 1 and [s.seed for s in plan.specs] == [1, 2]
    assert spec.task.sizes == {"train": 16, "eval": 8}
    assert (spec.hyperparameters["r"], spec.hyperparameters["lora_alpha"], spec.hyperparameters["lora_dropout"]) \
        == (4, 16, 0.05)
    method_rate = build_plan(parse_overrides(base + ["methods.lora.learning_rate=5E-4"]))
    assert method_rate.specs[0].hyperparameters["learning_rate"] == pytest.approx(5e-4 * 4)  # smoke's lr_multiplier
    overrides = parse_overrides(["tune=lr", "tune.grid=[3e-1,1]", "tune.fraction=2e-1", "tune.min_rows=16e0"])
    tune = parse_tune(overrides.values["tune"], overrides.tune)
    assert (tune.grid, tune.fraction, tune.min_rows) == ((0.3, 1.0), 0.2, 16)


@pytest.mark.parametrize("document, expected", [
    ("name: s\ndescription: &d x\n", "at line 2: YAML anchors (&d) are not allowed"),
    ("name: s\nmodel: minilm\nmodel: smollm2-135m\n", "at line 3: duplicate key 'model'"),
    ("name: s\ntasks: " + "[" * 500 + "]" * 500 + "\n", "at line 2: nested more than 32 levels deep"),
    ("name: s\ndescription: " + "x" * (2 << 20) + "\n", "larger than 1048576 bytes"),
    (f"name: s\nmethods: {LAUGHS}\n", "at line 2: YAML anchors (&a0) are not allowed"),
])
def test_unsafe_suite_files_refused_within_a_second(cli, tmp_path, document, expected):
    import time

    path = tmp_path / "s.yaml"
    path.write_text(document)
    started = time.perf_counter()
    code, _, err = cli("run", f"suite={path}", "--results", str(tmp_path / "res"))
    assert time.perf_counter() - started < 1.0
    assert code == 2 and (f"{path} {expected}" in err or f"{path}: {expected}" in err), err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "res").exists()


def test_data_nested_absurdly_deep_is_refused_not_a_crash(tmp_path):
    """datasets' JSON readers recurse: 100,000 levels ended the process with SIGSEGV. In a subprocess, so that a
    regression fails this test instead of ending the test session."""
    import subprocess
    import sys

    deep = '{"text": ' + '{"a": ' * 100_000 + "1" + "}" * 100_000 + ', "label": "pos"}\n'
    (tmp_path / "d.jsonl").write_text('{"text": "fine", "label": "pos"}\n' + deep)
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ntasks:\n  - {name: t, kind: classification, data: {source: local, files: "
                    "{train: d.jsonl, eval: d.jsonl}}}\n")
    proc = subprocess.run([sys.executable, "-m", "peftbench", "run", f"suite={path}", "--results",
                           str(tmp_path / "res")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-1000:]
    assert "line 2 nests values more than 100 levels deep" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "res").exists()


def _package_folders() -> list:
    from peftbench.paths import shipped_folders

    package, suites, reference, published = shipped_folders()
    return [reference / "smoke", published, suites / "data", package / "estimate"]


@pytest.mark.parametrize("results, expected", [
    ("/proc/x", "is not a writable folder"),
    ("{tmp}/file", "is a file; name a folder"),
    ("/dev/null", "is a file; name a folder"),
    ("{tmp}/" + "x" * 300, "longer than 255 bytes"),
    ("", "--results: is empty"),
    ("{tmp}/readonly", "is not a writable folder"),
    *[(str(folder), "inside peftbench's own shipped folder") for folder in _package_folders()],
])
def test_results_folder_checked_before_any_work(cli, tmp_path, results, expected):
    import os

    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "readonly").mkdir(mode=0o555)
    if results == "{tmp}/readonly" and os.geteuid() == 0:
        pytest.skip("root may write into a mode-555 folder (a read-only mount is refused like /proc)")
    results = results.replace("{tmp}", str(tmp_path))
    before = {p: sorted(os.listdir(p)) for p in [tmp_path, *_package_folders()]}
    code, _, err = cli("run", "suite=smoke", "--results", results)
    assert code == 2 and expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert {p: sorted(os.listdir(p)) for p in before} == before


RECOMMEND = ["recommend", "--task", "classification", "--gpu", "16GB", "--model", "minilm", "--train-examples", "1000"]


@pytest.mark.parametrize("argv, expected", [
    ([*RECOMMEND, "--gpus", "0"], "--gpus must be an integer from 1 to"),
    ([*RECOMMEND, "--gpus", "-1"], "--gpus must be an integer from 1 to"),
    ([*RECOMMEND, "--deploy", "server", "--max-latency-overhead", "-1"], "--max-latency-overhead (a latency ratio"),
    ([*RECOMMEND, "--deploy", "server", "--max-latency-overhead", "nan"], "must be a finite number in [1, 1e+06]"),
    ([*RECOMMEND, "--deploy", "server", "--adapters-per-base", "0"], "--adapters-per-base must be an integer"),
    (["report", "suite=smoke", "--reference", "--estimate-budget", "nan"], "--estimate-budget (seconds) must be"),
    (["report", "suite=smoke", "--reference", "--estimate-budget", "-1"], "--estimate-budget (seconds) must be"),
])
def test_recommend_and_report_values_refused_before_any_tracing(cli, tmp_path, monkeypatch, argv, expected):
    """Once refused only after minutes of tracing, in several lines, or accepted (NaN passes `< 0`)."""
    import time

    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    code, _, err = cli(*argv)
    assert code == 2 and expected in err, err[-2000:]
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert time.monotonic() - started < 5 and list(tmp_path.iterdir()) == []
