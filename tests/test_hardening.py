"""Crashes and loopholes found by a hostile-input pass, pinned as unit tests (the one-line CLI
refusals are in test_cli_errors.py, the fuzz tests in test_fuzz_inputs.py)."""

from __future__ import annotations

import pytest

from peftbench.errors import UserError, one_line, shown


def test_qlora_on_t5_leaves_the_fp32_modules_unquantised():
    """T5 casts the feed-forward input to `wo.weight.dtype`; a packed uint8 `wo` made it uint8 and the trace
    died in dropout ("result type Float can't be cast to the desired output type Long") after minutes.
    transformers never quantises `_keep_in_fp32_modules`, and neither does the emulation now."""
    import warnings

    from torch import nn

    from peftbench.estimate.build import build_wrapped, with_depth
    from peftbench.estimate.qlora import Linear4bit
    from peftbench.methods import get_method
    from peftbench.models.configs import load_any_config

    config = with_depth(load_any_config("t5-small"), 1)
    method = get_method("qlora")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_wrapped(config, method, dict(method.defaults), "generation", "bf16", device="meta")
    modules = dict(model.named_modules())
    wo = [m for n, m in modules.items() if n.endswith(".wo")]
    assert wo and all(isinstance(m, nn.Linear) and not isinstance(m, Linear4bit) for m in wo)
    assert any(isinstance(m, Linear4bit) for n, m in modules.items() if n.endswith(".wi"))


def test_qlora_on_t5_traces():
    from peftbench.estimate.api import estimate_config
    from peftbench.estimate.build import with_depth
    from peftbench.models.configs import load_any_config

    config = with_depth(load_any_config("t5-small"), 1)
    result = estimate_config(config, "t5-small", "qlora", task_kind="generation", batch_size=1, seq_len=8,
                             num_labels=512, hardware=["a100-80gb"])
    assert result.peak_bytes > 0 and result.trainable_params > 0


def test_report_plots_do_not_parse_mathtext():
    from peftbench.report import plots

    name = r"cost $\frac{x$"
    svg = plots.prediction_svg([{"measured": 2e8, "predicted": 2.1e8, "task": name, "error": 0.05}], "p")
    assert name in svg


@pytest.mark.parametrize("model, kind, limit", [("minilm", "classification", 512),
                                                ("roberta-base", "classification", 512),
                                                ("bart-base", "generation", 1024),
                                                ("gpt2", "generation", 1024),
                                                ("smollm2-135m", "generation", None),
                                                ("t5-small", "generation", None)])
def test_position_limits(model, kind, limit):
    """Learned absolute position tables, offsets included (RoBERTa and BART start at 2); rotary and relative
    positions have no hard limit."""
    from peftbench.models.configs import load_any_config
    from peftbench.runs.preflight import position_limit

    assert position_limit(load_any_config(model), kind) == limit


def test_messages_escape_control_characters():
    assert shown("a\r\nb\x1b[2J") == "'a\\r\\nb\\x1b[2J'"
    assert one_line("x\ny\x1b") == "x\\ny\\x1b"
    assert len(shown("x" * 500)) <= 80


@pytest.mark.parametrize("name", ["../x", "/abs", "", ".", "..", "a/b", "reference", "published", "a b", "ü",
                                  None, 5, "x\n"])
def test_suite_names_are_identifiers(name):
    from peftbench.paths import check_name

    with pytest.raises(UserError):
        check_name(name)


@pytest.mark.parametrize("method, params", [
    ("lora", {"r": -1}), ("lora", {"r": 0}), ("lora", {"r": "abc"}), ("lora", {"r": 2**40}),
    ("lora", {"lora_dropout": 5}), ("lora", {"lora_dropout": -149793}), ("lora", {"lora_dropout": float("nan")}),
    ("lora", {"use_dora": "ü"}), ("lora", {"use_dora": 1}), ("lora", {"target_modules": [1]}),
    ("lora", {"target_modules": []}), ("lora", {"lora_alpha": 1.5}), ("lora", {"init_lora_weights": "nope"}),
    ("oft", {"r": 0, "oft_block_size": 0}), ("ia3", {"target_modules": ["query"], "feedforward_modules": ["x"]}),
    ("prompt_tuning", {"num_virtual_tokens": 0}), ("adapter", {"reduction_factor": 0}),
    ("adapter", {"target_modules": [3]}), ("lora", {"learning_rate": float("inf")}),
    ("lora", {"learning_rate": True}),
])
def test_hyperparameters_refused(method, params):
    from peftbench.methods import get_method

    m = get_method(method)
    with pytest.raises(UserError, match=method):
        m.validate_hyperparameters(m.hyperparameters(params))


@pytest.mark.parametrize("method, params", [
    ("lora", {}), ("lora", {"r": 16, "target_modules": ["query", "value"], "init_lora_weights": "pissa_niter_4"}),
    ("oft", {"r": 4, "oft_block_size": 0}), ("lokr", {"decompose_factor": -1}), ("lora", {"lora_dropout": 0}),
    ("prompt_tuning", {"prompt_tuning_init": "RANDOM"}), ("adapter", {"target_modules": ["attention"]}),
])
def test_hyperparameters_accepted(method, params):
    from peftbench.methods import get_method, registry

    m = get_method(method)
    m.validate_hyperparameters(m.hyperparameters(params))
    for every in registry().values():  # every method's defaults are valid
        every.validate_hyperparameters(every.hyperparameters())


# ---- YAML as users write it: numbers in scientific notation; no aliases, repeated keys or deep nesting ----
@pytest.mark.parametrize("text, value", [("1e-4", 1e-4), ("5E-4", 5e-4), ("[3e-1,1]", [0.3, 1]), ("1e3", 1000),
                                         ("-1e2", -100), ("2.5e3", 2500.0), ("1.0e+3", 1000.0), (".5e3", 500.0),
                                         ("1e23", 1e23), ("1e400", float("inf")), ("'1e-4'", "1e-4"), ("e3", "e3"),
                                         ("x1e3", "x1e3"), ("1.5", 1.5), ("0x10", 16)])
def test_yaml_numbers(text, value):
    from peftbench import safe_yaml

    loaded = safe_yaml.load(text)
    assert loaded == value and type(loaded) is type(value)


LAUGHS = "[" + ", ".join(["&a0 [x,x,x,x,x,x,x,x,x]"] + [f"&a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]"
                                                        for i in range(1, 10)]) + "]"


@pytest.mark.parametrize("text, reason, line", [
    (LAUGHS, "YAML anchors (&a0) are not allowed", 1),
    ("a: 1\nb: *x\n", "YAML aliases (*x) are not allowed", 2),
    ("name: x\nmethods: [lora]\nmethods: [ia3]\n", "duplicate key 'methods'", 3),
    ("a: {b: 1, b: 2}\n", "duplicate key 'b'", 1),
    ("x: " + "[" * 5000 + "]" * 5000, "nested more than 32 levels deep", 1),
    ("9" * 5000, "a value cannot be read", 1),
])
def test_unsafe_yaml_refused_fast(text, reason, line):
    import time

    from peftbench import safe_yaml

    started = time.perf_counter()
    with pytest.raises(safe_yaml.Refused) as refused:
        safe_yaml.load(text)
    assert time.perf_counter() - started < 1.0
    assert reason in refused.value.reason and refused.value.line == line


def test_yaml_size_bound():
    from peftbench import safe_yaml

    with pytest.raises(safe_yaml.Refused, match="at most 65536"):
        safe_yaml.load("x" * 70_000, safe_yaml.MAX_VALUE_BYTES)


def test_messages_shorten_a_value_before_rendering_it():
    """The repr of a billion-item value would take minutes and gigabytes; an int of 5000 digits has none."""
    import time

    nested: list = ["x"] * 9
    for _ in range(12):  # 9**13 items if walked in full
        nested = [nested] * 9
    started = time.perf_counter()
    assert len(shown(nested)) <= 80 and len(shown(10**5000)) <= 80 and len(shown({"k": nested})) <= 80
    assert time.perf_counter() - started < 0.5
    assert shown([1, 2]) == "[1, 2]" and shown("abc") == "'abc'" and shown(10**30) == str(10**30)


def test_suite_numbers_in_scientific_notation(tmp_path):
    from peftbench.suites import TrainConfig, load_suite

    path = tmp_path / "s.yaml"
    path.write_text("name: sci\nseeds: [0e0, 1e0]\ntrain: {learning_rate: 1e-4, weight_decay: 1E-2, max_steps: 2e1}\n"
                    "tasks:\n  - {name: t, kind: classification, max_length: 64e0, sizes: {train: 8e0},\n"
                    "     data: {source: local, files: {train: a.jsonl, eval: b.jsonl}}}\n")
    suite = load_suite(str(path))
    train = TrainConfig.build(suite.train, suite.tasks[0].train)
    assert (train.learning_rate, train.weight_decay, train.max_steps) == (1e-4, 0.01, 20)
    assert suite.seeds == (0, 1) and suite.tasks[0].max_length == 64 and suite.tasks[0].sizes == {"train": 8}


@pytest.mark.parametrize("layer, expected", [
    ({"max_steps": 10**23}, "train.max_steps must be a positive integer of at most 10000000"),
    ({"max_steps": 1e23}, "train.max_steps must be a positive integer of at most 10000000"),
    ({"max_steps": 10**6, "gradient_accumulation_steps": 20}, "at most 500000 optimizer steps of 20 micro-batches"),
    ({"batch_size": 2**40}, "train.batch_size must be a positive integer of at most 2147483647"),
    ({"learning_rate": 10**400}, "train.learning_rate must be a finite number > 0"),
])
def test_absurd_training_values(layer, expected):
    from peftbench.suites import TrainConfig

    with pytest.raises(UserError, match=expected.replace("(", r"\(")):
        TrainConfig.build(layer)


# ---- model folders that ship their own code (auto_map) ----------------------------------------------------
REMOTE_CONFIG = '''from transformers import LlamaConfig

with open({marker!r}, "a") as handle:  # proves that this file was executed
    handle.write("configuration\\n")


class MarkerConfig(LlamaConfig):
    model_type = "marker_llama"
'''
REMOTE_MODELING = '''from torch import nn
from transformers import LlamaForCausalLM, LlamaForSequenceClassification, LlamaModel, LlamaPreTrainedModel

from .configuration_marker import MarkerConfig

with open({marker!r}, "a") as handle:
    handle.write("modeling\\n")


class MarkerForCausalLM(LlamaForCausalLM):
    config_class = MarkerConfig


class MarkerForSequenceClassification(LlamaForSequenceClassification):
    config_class = MarkerConfig

    def __init__(self, config):  # its own base model, as model folders with code build theirs
        LlamaPreTrainedModel.__init__(self, config)
        self.num_labels = config.num_labels
        self.model = LlamaModel(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()
'''


def _model_with_code(folder, marker, tokenizer_dir):
    """A tiny Llama (one layer, hidden 16) whose config and model classes live in the folder's own .py files,
    named by `auto_map`; running either file appends to `marker`. MiniLM's tokenizer stands in for its own."""
    import json
    import shutil
    from pathlib import Path

    from transformers import LlamaConfig, LlamaForCausalLM

    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(Path(tokenizer_dir) / name, folder / name)
    config = LlamaConfig(vocab_size=30522, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0,
                         tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    auto_map = {"AutoConfig": "configuration_marker.MarkerConfig",
                "AutoModelForCausalLM": "modeling_marker.MarkerForCausalLM",
                "AutoModelForSequenceClassification": "modeling_marker.MarkerForSequenceClassification"}
    (folder / "config.json").write_text(json.dumps(config.to_dict() | {"model_type": "marker_llama",
                                                                       "auto_map": auto_map}))
    (folder / "configuration_marker.py").write_text(REMOTE_CONFIG.format(marker=str(marker)))
    (folder / "modeling_marker.py").write_text(REMOTE_MODELING.format(marker=str(marker)))
    return folder


def test_trust_remote_code_runs_a_model_folder_with_its_own_code(tmp_path, minilm_dir):
    """false: refused before any of the folder's code runs; true: the plan's meta-device checks, the
    estimator's prediction and the run itself all build the folder's classes."""
    import json
    import os
    import subprocess
    import sys

    marker = tmp_path / "ran"
    model = _model_with_code(tmp_path / "coded", marker, minilm_dir)
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}  # where transformers copies the code

    def run(trust: str) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "peftbench", "run", "suite=smoke", "tasks=[rt_sentiment]", "methods=[lora]",
                f"model={model}", "methods.lora.target_modules=[q_proj,v_proj]", "sizes.train=8", "sizes.eval=8",
                "train.max_steps=2", "train.batch_size=4", f"trust_remote_code={trust}", "--no-progress",
                "--results", str(tmp_path / "res")]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)

    refused = run("false")
    assert refused.returncode == 2 and "trust_remote_code=true" in refused.stderr, refused.stderr[-2000:]
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "res").exists()

    accepted = run("true")
    assert accepted.returncode == 0, accepted.stderr[-2000:]
    [record] = [json.loads(line) for line in (tmp_path / "res" / "smoke" / "runs.jsonl").read_text().splitlines()]
    assert record["status"] == "ok" and record["model_type"] == "marker_llama", record.get("error")
    assert "error" not in (record.get("prediction") or {"error": "no prediction"})
    assert "modeling" in marker.read_text()


# ---- user data read as written -----------------------------------------------------------------------------
def _csv_task(path, labels=None):
    from peftbench.suites import TaskSpec

    return TaskSpec(name="t", kind="classification", data={"source": "local", "files": {"train": str(path),
                                                                                        "eval": str(path)}},
                    fields={"text": "text", "label": "label"}, model="minilm", sizes={}, labels=labels)


def test_csv_cells_like_na_are_strings_in_the_columns_read(tmp_path):
    from peftbench.data import load_task_data

    path = tmp_path / "d.csv"
    path.write_text("text,label,other\nfine film,NA,NA\nNone,yes,1\nnull,NA,\n123,yes,2\n")
    data = load_task_data(_csv_task(path, labels=("NA", "yes")))
    assert data.train["text"] == ["fine film", "None", "null", "123"]
    assert data.train["label"] == ["NA", "yes", "NA", "yes"]
    assert data.train["other"] == [None, 1.0, None, 2.0]  # a column the task does not read: pandas' reading


def test_csv_empty_cell_is_still_missing(tmp_path):
    from peftbench.data import load_task_data

    path = tmp_path / "d.csv"
    path.write_text("text,label\nfine film,yes\n,no\n")
    with pytest.raises(UserError, match="has 1 empty"):
        load_task_data(_csv_task(path))


@pytest.mark.parametrize("name, text", [("bad.csv", "text,label\na,b\nc,d,e\n"),
                                        ("bad.jsonl", '{"text": "a", "label": "b"}\n{"text": "a", "label": }\n')])
def test_unparseable_data_is_one_line(tmp_path, name, text):
    """datasets logs its own "Failed to read file" line to stderr before raising: not shown."""
    import subprocess
    import sys

    (tmp_path / name).write_text(text)
    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: s\ntasks:\n  - {{name: t, kind: classification, data: {{source: local, files: "
                     f"{{train: {name}, eval: {name}}}}}}}\n")
    proc = subprocess.run([sys.executable, "-m", "peftbench", "run", f"suite={suite}", "--results",
                           str(tmp_path / "res")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "cannot parse" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# ---- report pages --------------------------------------------------------------------------------------------
def test_report_all_keeps_the_page_of_a_suite_named_index(cli, tmp_path):
    from conftest import REPO

    records = (REPO / "results" / "reference" / "smoke" / "runs.jsonl").read_text().splitlines()[:2]
    for suite in ("index", "other"):
        (tmp_path / "res" / suite).mkdir(parents=True)
        (tmp_path / "res" / suite / "runs.jsonl").write_text("\n".join(records) + "\n")
    code, out, err = cli("report", "all", "--results", str(tmp_path / "res"), "--no-estimates", "--no-progress",
                         "-o", str(tmp_path / "pages"))
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "pages").iterdir()) == ["index.html", "index.suite.html", "other.html"]
    index = (tmp_path / "pages" / "index.html").read_text()
    assert "peftbench reports" in index and "./index.suite.html" in index
    assert "peftbench · index" in (tmp_path / "pages" / "index.suite.html").read_text()


# ---- recommend --data and estimate overrides read as run reads them ---------------------------------------------
def test_recommend_data_nested_past_the_parsers_depth_is_one_line(tmp_path):
    """Parsed by datasets directly, a JSONL line nested 100,000 deep killed the process (SIGSEGV)."""
    import subprocess
    import sys

    path = tmp_path / "deep.jsonl"
    path.write_text('{"text": ' + "[" * 100_000 + "]" * 100_000 + ', "label": "a"}\n')
    proc = subprocess.run([sys.executable, "-m", "peftbench", "recommend", "--task", "classification", "--gpu",
                           "16GB", "--data", str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and f"--data {path}" in proc.stderr and "nested" in proc.stderr, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1


def test_recommend_data_csv_cells_like_na_are_labels(tmp_path):
    from peftbench.recommend.query import resolve_task

    path = tmp_path / "d.csv"
    path.write_text("text,label\n" + "".join(f"{text} film,{label}\n" for text, label in
                                               [("good", "pos"), ("bad", "neg"), ("odd", "NA"), ("fine", "None")] * 5))
    query = resolve_task("classification", [], data=path, model="minilm")
    assert query.num_labels == 4 and query.train_examples == 20


@pytest.mark.parametrize("raw, value", [("5e-4", 5e-4), ("1e1", 10), ("[q, v]", ["q", "v"]), ("", None)])
def test_estimate_overrides_read_numbers_as_run_does(raw, value):
    from peftbench.validation import parse_method_overrides

    assert parse_method_overrides([f"methods.lora.lora_dropout={raw}"]) == {"lora": {"lora_dropout": value}}


@pytest.mark.parametrize("raw, reason", [
    ("[" + ", ".join(["&a0 [x,x,x,x,x,x,x,x,x]"] + [f"&a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]"
                                                     for i in range(1, 10)]) + "]", "anchors"),
    ("{a: 1, a: 2}", "duplicate key"),
    ("[" * 200 + "]" * 200, "nested more than"),
])
def test_estimate_overrides_refuse_hostile_yaml_in_one_line_at_once(cli, raw, reason):
    import time

    started = time.monotonic()
    code, _, err = cli("estimate", "--model", "llama-3.2-1b", "--method", "lora", f"methods.lora.target_modules={raw}")
    assert code == 2 and reason in err and len(err.strip().splitlines()) == 1, err[-2000:]
    assert time.monotonic() - started < 5
