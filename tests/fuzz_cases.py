"""Hypothesis strategies and properties for the input fuzz tests (tests/test_fuzz_inputs.py) and for the
counts reported in benchmarks/fuzz_counts.md (benchmarks/fuzz_counts.py runs the same ones, longer).

Every property accepts one generated input and either returns (the input held: refused with exactly one
line and exit code 2 and nothing written, or accepted as valid) or raises AssertionError / the crash.
Nothing here trains: `run` inputs stop at the plan, and end-to-end `run` calls always carry a bad value.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

# ---- values a hostile or careless user types -------------------------------------------------------------
NASTY_SCALARS = [".nan", ".inf", "-.inf", "-1", "0", "1", "2", "0.5", "1e308", "-149793", "abc", "ü", "true",
                 "false", "'false'", "maybe", "null", "", "99999999999999999999", "[]", "[1,2]", "[a,b]",
                 "[nonexistent]", "{a: 1}", "fp16", "cuda", "cudaXYZ", "../../x", "/abs", "a\\r\\nb", "'\r\n'",
                 "$\\frac{x$", "[", "{", ":", "- a", "x" * 300, "x" * 300 + ".yaml", "a\x00b", "1e-4", "5E-4",
                 "1e23", "1e400", "-1e2", "[3e-1,1]", "&a [x]", "[&a x, *a]", "{a: 1, a: 2}", "[" * 40 + "]" * 40,
                 "9" * 5000]
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
VALUE = st.one_of(st.sampled_from(NASTY_SCALARS), TEXT, st.integers(-(2**70), 2**70).map(str),
                  st.floats(allow_nan=True, allow_infinity=True).map(repr))

TRAIN_KEYS = ["max_steps", "batch_size", "eval_batch_size", "learning_rate", "lr_multiplier", "weight_decay",
              "warmup_ratio", "max_grad_norm", "dtype", "gradient_checkpointing", "threads", "nosuch"]
LORA_KEYS = ["r", "lora_alpha", "lora_dropout", "use_dora", "target_modules", "learning_rate", "init_lora_weights",
             "layers_to_transform", "use_rslora", "bias", "modules_to_save", "nosuch"]
RUN_KEYS = (["model", "device", "seeds", "timeout", "trust_remote_code", "scale", "jobs", "save_adapters",
             "measure_after_training", "methods", "tasks", "nosuch", "", "suite"]
            + [f"train.{k}" for k in TRAIN_KEYS] + ["sizes.train", "sizes.eval", "sizes.nosuch"]
            + [f"methods.lora.{k}" for k in LORA_KEYS] + ["methods.ia3.target_modules", "methods..r"])
# Each generated override list starts from a small valid plan (one task, one method, one seed), so that
# the cases which pass validation stay cheap to plan.
BASE_RUN = ["suite=smoke", "tasks=[rt_sentiment]", "methods=[lora]", "sizes.train=16", "sizes.eval=16"]
# Values sure to be refused: end-to-end `run` cases carry one, so nothing can start training.
SURE_BAD = ["seeds=-1", "device=cudaXYZ", "train.warmup_ratio=abc", "methods.lora.r=0", "timeout=.nan",
            "train.lr_multiplier=true", "model=", "methods.lora.lora_dropout=5", "trust_remote_code=maybe"]


# Values a careful user would type, per key: most generated pairs use one, so that many plans pass and the
# property checks what an accepted plan holds, not only what is refused.
GOOD_VALUES = {
    "model": ["minilm"], "device": ["cpu"], "seeds": ["0", "[0,1]", "4294967295"], "timeout": ["60", "0.5", "null"],
    "trust_remote_code": ["false"], "scale": ["default"], "jobs": ["1", "auto"], "save_adapters": ["true", "false"],
    "measure_after_training": ["true", "false"],
    "methods": ["[lora]", "lora"], "tasks": ["[rt_sentiment]"], "suite": ["smoke"],
    "train.max_steps": ["1", "20", "2e1"], "train.batch_size": ["2"], "train.eval_batch_size": ["4"],
    "train.learning_rate": ["1e-4", "0.01", "null"], "train.lr_multiplier": ["0.5", "4"],
    "train.weight_decay": ["0", "0.01"], "train.warmup_ratio": ["0", "0.1", "1"], "train.max_grad_norm": ["0", "1.0"],
    "train.dtype": ["fp32", "bf16"], "train.gradient_checkpointing": ["true", "false"], "train.threads": ["1"],
    "sizes.train": ["8"], "sizes.eval": ["8"], "methods.lora.r": ["1", "4", "64"], "methods.lora.lora_alpha": ["8"],
    "methods.lora.lora_dropout": ["0", "0.1", "0.99"], "methods.lora.use_dora": ["true", "false"],
    "methods.lora.target_modules": ["[query]", "[query, value]", "all-linear", "null"],
    "methods.lora.learning_rate": ["0.001", "5E-4"], "methods.lora.modules_to_save": ["[classifier]", "null"],
    "methods.lora.init_lora_weights": ["true", "gaussian"],
    "methods.lora.layers_to_transform": ["[0, 1]", "0"], "methods.lora.use_rslora": ["true"],
    "methods.lora.bias": ["none", "all"],
}


@st.composite
def run_overrides(draw: Any) -> list[str]:
    tokens = []
    for key in draw(st.lists(st.sampled_from(RUN_KEYS), min_size=1, max_size=4)):
        good = GOOD_VALUES.get(key)
        value = draw(st.sampled_from(good)) if good and draw(st.integers(0, 9)) < 7 else draw(VALUE)
        tokens.append(f"{key}={value}")
    if draw(st.integers(0, 9)) == 0:
        tokens.append(draw(st.sampled_from(["noequals", "=1", "a.b.c.d=1", "train=1"])))
    # The base's methods=[lora] and tasks=[rt_sentiment] keep plans small; later tokens override them.
    return BASE_RUN + tokens


def check_plan(tokens: list[str]) -> str:
    """`run`'s validation on `tokens`: a UserError of one non-empty line, or a plan whose values are valid."""
    from peftbench.errors import UserError, one_line
    from peftbench.overrides import parse_overrides
    from peftbench.runs.plan import build_plan

    try:
        plan = build_plan(parse_overrides(tokens))
    except UserError as exc:
        message = one_line(str(exc))
        assert message.strip() and "\n" not in message and "Traceback" not in message
        return "refused"
    _assert_valid_plan(plan)
    return "accepted"


def _assert_valid_plan(plan: Any) -> None:
    from peftbench.methods import get_method
    from peftbench.validation import SEED_MAX

    assert plan.specs and plan.jobs >= 1
    assert plan.timeout is None or (math.isfinite(plan.timeout) and plan.timeout > 0)
    for spec in plan.specs:
        assert isinstance(spec.seed, int) and 0 <= spec.seed <= SEED_MAX
        assert re.fullmatch(r"cpu|cuda(:\d+)?", spec.device) and isinstance(spec.trust_remote_code, bool)
        spec.train.validate()  # raises if any training value is out of range
        get_method(spec.method).validate_hyperparameters(spec.hyperparameters)


# ---- the command line, end to end -------------------------------------------------------------------------
def call_cli(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """The CLI in this process, in `cwd`; (exit code, stdout, stderr). Any exception but SystemExit is a crash."""
    from peftbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's own errors
                code = exc.code
    finally:
        os.chdir(here)
    return int(code or 0), out.getvalue(), err.getvalue()


def assert_refused(argv: list[str], expect_refusal: bool = True) -> str:
    """Exit 2 with exactly one stderr line and nothing written in a fresh working folder (or, where
    `expect_refusal` is False, exit 0); returns "refused" or "accepted"."""
    with tempfile.TemporaryDirectory(prefix="peftbench-fuzz-") as folder:
        cwd = Path(folder)
        code, out, err = call_cli(argv + (["--results", str(cwd / "results")] if argv[0] == "run" else []), cwd)
        written = sorted(p.name for p in cwd.iterdir())
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("peftbench: error: "), (argv, err)
        assert "Traceback" not in err and written == [], (argv, written)
        return "refused"
    assert not expect_refusal, (argv, code, err[-500:])
    assert code == 0, (argv, code, err[-500:])
    return "accepted"


# ---- estimate and recommend flags -------------------------------------------------------------------------
FIT_MODELS = ["llama-3.2-1b", "qwen2.5-0.5b", "gemma-2-2b", "mistral-7b"]  # shipped shape fits: no tracing
FIT_METHODS = ["lora", "dora", "ia3", "prompt_tuning", "full", "qlora", "bitfit", "vera"]
BAD_FLAG_VALUES = ["-1", "0", "nan", "inf", "-inf", "abc", "", "1e400", "99999999999999999999", "-5", "ü", "\r\n"]


@st.composite
def estimate_argv(draw: Any) -> tuple[list[str], bool]:
    """Flags for `estimate`; (argv, sure to be refused). Valid cases stay on shipped shape fits."""
    argv = ["estimate", "--model", draw(st.sampled_from(FIT_MODELS)), "--method", draw(st.sampled_from(FIT_METHODS)),
            "--batch-size", str(draw(st.integers(1, 64))), "--seq-len", str(draw(st.integers(64, 8192))), "--json"]
    bad = draw(st.lists(st.sampled_from(["--batch-size", "--seq-len", "--num-labels", "--model", "--method",
                                         "--dtype", "--task-kind", "--gpu", "override"]), max_size=2, unique=True))
    for flag in bad:
        value = draw(st.sampled_from(BAD_FLAG_VALUES))
        if flag == "override":
            argv.append(f"methods.{argv[4]}.{draw(st.sampled_from(['r', 'lora_dropout', 'nosuch']))}={value}")
        elif flag in ("--model", "--method"):
            argv[argv.index(flag) + 1] = draw(st.sampled_from(["nosuch", "../x", "", "org/nosuch", "\x1b[2J"]))
        else:
            argv += [flag, value]
    return argv, bool(bad)


RECOMMEND_FLAGS = ["--epochs", "--max-hours", "--max-adapter-mb", "--top", "--batch-size", "--train-examples",
                   "--seq-len", "--results", "--gpu", "--task", "--hardware", "--data"]


@st.composite
def recommend_argv(draw: Any) -> list[str]:
    """Flags for `recommend`, at least one of them bad (a valid request reads the whole evidence base)."""
    argv = ["recommend", "--task", draw(st.sampled_from(["classification", "summarization", "smoke/rt_sentiment"]))]
    for flag in draw(st.lists(st.sampled_from(RECOMMEND_FLAGS), min_size=1, max_size=3, unique=True)):
        if flag in ("--results", "--data"):
            value = draw(st.sampled_from(["/nonexistent", "/nonexistent/x.csv", "\r\n"]))
        elif flag in ("--gpu", "--hardware", "--task"):
            value = draw(st.sampled_from(["nosuch", "-5GB", "0GB", "nanGB", "", "../x", "\x00"]))
        else:
            value = draw(st.sampled_from(BAD_FLAG_VALUES))
        argv += [flag, value]
    return argv


# ---- suite YAML documents ---------------------------------------------------------------------------------
YAML_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**70), TEXT,
                      st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["../../x", "/abs", "", "."]))
YAML_VALUE = st.recursive(YAML_LEAF, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                             st.dictionaries(TEXT, inner, max_size=3)), max_leaves=6)
VALID_TASK = {"name": "t", "kind": "classification", "data": {"source": "local", "files": {"train": "a.jsonl",
                                                                                           "eval": "b.jsonl"}},
              "fields": {"text": "text", "label": "label"}, "labels": ["neg", "pos"], "max_length": 64,
              "sizes": {"train": 8, "eval": 8}, "metrics": ["accuracy"], "train": {"max_steps": 2}}
TASK_KEYS = list(VALID_TASK) + ["prompt", "model", "max_target_length", "description", "nosuch"]
SUITE_KEYS = ["name", "description", "model", "methods", "seeds", "train", "tasks", "hub_tasks", "nosuch"]


@st.composite
def suite_documents(draw: Any) -> str:
    """A suite file: a valid one with a few fields replaced by random YAML values, or random text."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=60))
    task = dict(VALID_TASK)
    for key in draw(st.lists(st.sampled_from(TASK_KEYS), max_size=2, unique=True)):
        task[key] = draw(YAML_VALUE)
    suite: dict[str, Any] = {"name": "fuzz", "methods": ["lora"], "seeds": [0], "tasks": [task]}
    for key in draw(st.lists(st.sampled_from(SUITE_KEYS), max_size=2, unique=True)):
        suite[key] = draw(YAML_VALUE)
    return yaml.safe_dump(suite, allow_unicode=True)


def check_suite(text: str) -> str:
    """`load_suite` on the document: a one-line UserError, or a Suite whose every field has its type."""
    from peftbench.errors import UserError
    from peftbench.paths import NAME_PATTERN, RESERVED
    from peftbench.suites import load_suite

    with tempfile.TemporaryDirectory(prefix="peftbench-fuzz-") as folder:
        path = Path(folder) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            suite = load_suite(str(path))
        except UserError as exc:
            assert str(exc).strip()
            return "refused"
    assert NAME_PATTERN.fullmatch(suite.name) and suite.name not in RESERVED
    assert all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in suite.seeds)
    for task in suite.tasks:
        assert isinstance(task.max_length, int) and task.max_length > 0
        assert all(isinstance(v, int) and v > 0 for v in task.sizes.values())
        assert isinstance(task.fields, dict) and all(isinstance(v, str) for v in task.fields.values())
    return "accepted"


# ---- hostile YAML: aliases, repeated keys, deep nesting, huge numbers, scientific notation --------------------
@st.composite
def hostile_yaml(draw: Any) -> str:
    """One YAML flow value of a kind that once hung, crashed or silently misread: an alias bomb (a few hundred
    bytes that expand to billions of items), an anchor reused, a repeated key, nesting thousands deep, an
    integer past Python's 4300-digit limit, or a number in scientific notation (YAML 1.1 read `1e-4` as text)."""
    kind = draw(st.sampled_from(["bomb", "alias", "duplicate", "deep", "digits", "scientific"]))
    if kind == "bomb":
        width, levels = draw(st.integers(2, 9)), draw(st.integers(1, 12))
        parts = [f"&a0 [{','.join(['x'] * width)}]"]
        parts += [f"&a{i} [{','.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
        return "[" + ", ".join(parts) + "]"
    if kind == "alias":
        anchor, alias = draw(st.sampled_from(["a", "x1", "long"])), draw(st.sampled_from(["a", "x1", "long", "b"]))
        return f"[&{anchor} {draw(st.sampled_from(['1', '[a, b]', '{k: v}']))}, *{alias}]"
    if kind == "duplicate":
        key = draw(st.sampled_from(["a", "r", "1", "true"]))
        return f"{{{key}: 1, b: 2, {key}: 3}}"
    if kind == "deep":
        depth, opener, closer = draw(st.integers(1, 3000)), *draw(st.sampled_from([("[", "]"), ("{a: ", "}")]))
        return opener * depth + "1" + closer * depth
    if kind == "digits":
        return draw(st.sampled_from(["", "-"])) + "9" * draw(st.integers(1, 6000))
    mantissa = draw(st.sampled_from(["1", "5", "25", "1.5", ".5", "0", "-3"]))
    return f"{mantissa}{draw(st.sampled_from('eE'))}{draw(st.sampled_from(['', '+', '-']))}{draw(st.integers(0, 500))}"


def check_override_value(text: str) -> str:
    """`methods=VALUE`: refused with one line, or read; either way within a second, and never left as text when it
    is a number in scientific notation."""
    import time

    from peftbench.errors import UserError, one_line, shown
    from peftbench.overrides import parse_overrides

    started = time.perf_counter()
    try:
        value = parse_overrides([f"methods={text}"]).values["methods"]
        shown(value)  # an error message may echo it
        outcome = "accepted"
    except UserError as exc:
        message = one_line(str(exc))
        assert message.strip() and "\n" not in message and len(message) < 1000, message[:300]
        outcome = "refused"
    assert time.perf_counter() - started < 1.0, text[:80]
    if outcome == "accepted" and re.fullmatch(r"-?[0-9.]+[eE][-+]?[0-9]+", text):
        assert isinstance(value, (int, float)), (text, value)
    return outcome


@st.composite
def hostile_suites(draw: Any) -> str:
    """A valid suite document with one hostile YAML value in a top-level key, or that key repeated with it."""
    fields = {"name": "fuzz", "methods": "[lora]", "seeds": "[0]", "description": "x", "train": "{max_steps: 2}"}
    key, value = draw(st.sampled_from(list(fields))), draw(hostile_yaml())
    repeated = draw(st.booleans())
    if not repeated:
        fields[key] = value
    text = "".join(f"{k}: {v}\n" for k, v in fields.items()) + "tasks:\n" + yaml.safe_dump([VALID_TASK])
    return text + (f"{key}: {value}\n" if repeated else "")


# ---- recommend and report values checked before any tracing ------------------------------------------------------
SERVING_BAD = {"--gpus": ["0", "-1", "65537", "99999999999999999999"],
               "--max-latency-overhead": ["-1", "0", "0.99", "nan", "inf", "-inf", "1e400", "1e7"],
               "--adapters-per-base": ["0", "-1", "1000001"]}


@st.composite
def serving_argv(draw: Any) -> list[str]:
    """`recommend` with --gpus / --deploy values, or `report --estimate-budget`, at least one of them bad: each
    is refused before any model is traced."""
    if draw(st.integers(0, 4)) == 0:
        budget = draw(st.sampled_from(["nan", "-1", "-inf", "inf", "1e400", "-0.5", "1e10"]))
        return ["report", "suite=smoke", "--reference", "--no-progress", "--estimate-budget", budget]
    argv = ["recommend", "--task", "classification", "--gpu", "16GB", "--model", "minilm",
            "--deploy", draw(st.sampled_from(["server", "edge"]))]
    flags = draw(st.lists(st.sampled_from(sorted(SERVING_BAD)), min_size=1, max_size=3, unique=True))
    for flag in flags:
        argv += [flag, draw(st.sampled_from(SERVING_BAD[flag]))]
    return argv


def refused_at_once(argv: list[str]) -> str:
    """Refused with one line and nothing written, within seconds (no evidence read, no model traced)."""
    import time

    started = time.perf_counter()
    outcome = assert_refused(argv)
    assert time.perf_counter() - started < 10, argv
    return outcome


# ---- estimate override values (methods.NAME.KEY=VALUE), read as run reads them -----------------------------------
def check_estimate_override(text: str) -> str:
    """`estimate`'s `methods.lora.r=VALUE` is refused in one line, or read as `run` reads the same value."""
    from peftbench.errors import UserError, one_line
    from peftbench.overrides import parse_overrides as run_overrides
    from peftbench.validation import parse_method_overrides

    try:
        value = parse_method_overrides([f"methods.lora.r={text}"])["lora"]["r"]
    except UserError as exc:
        message = one_line(str(exc))
        assert message.strip() and "\n" not in message and len(message) < 1000, message[:300]
        with pytest_raises(UserError):  # run refuses it too
            run_overrides([f"methods.lora.r={text}"])
        return "refused"
    assert value == run_overrides([f"methods.lora.r={text}"]).method_params["lora"]["r"] or value != value
    return "accepted"


@contextlib.contextmanager
def pytest_raises(kind: type[BaseException]):
    """`pytest.raises` without pytest: benchmarks/fuzz_counts.py runs these properties outside it."""
    try:
        yield
    except kind:
        return
    raise AssertionError(f"{kind.__name__} not raised")


# ---- ray_address values --------------------------------------------------------------------------------------------
@st.composite
def ray_addresses(draw: Any) -> str:
    """A cluster address as typed: mostly HOST:PORT on this machine, where nothing or no Ray head answers."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.one_of(TEXT, st.sampled_from(["auto:1", "ray://h:1", "h:", ":1", "h:99999", "a b:1"])))
    host = draw(st.sampled_from(["127.0.0.1", "localhost", "[::1]", "0.0.0.0"]))
    return f"{host}:{draw(st.integers(1, 65535))}"


def check_ray_address(address: str) -> str:
    """Refused in one line within seconds (a malformed address, or nothing there that speaks as a Ray head), or
    accepted where a Ray head answers: never the minutes Ray's own connect retries take."""
    import time

    from peftbench.errors import UserError, one_line
    from peftbench.runs.ray_executor import _check_head_answers, ray_options

    started = time.perf_counter()
    try:
        ray_options({"executor": "ray", "ray_address": address}, "cpu")
        if address != "auto":
            _check_head_answers(address)
        outcome = "accepted"
    except UserError as exc:
        assert "\n" not in one_line(str(exc))
        outcome = "refused"
    assert time.perf_counter() - started < 12, address
    return outcome


# ---- damaged run records ---------------------------------------------------------------------------------------------
HOSTILE_FIELD_VALUES = ["high", "", "1e3", "NaN", [], [1, 2], {}, {"a": 1}, None, True, 1e40, -1e40, 10**30,
                        float("nan"), float("inf"), -1, 0, 2.5]
DAMAGED_FIELDS = ["metrics.accuracy", "metrics.macro_f1", "train_seconds", "wall_seconds", "adapter_bytes",
                  "trainable_params", "total_params", "memory.peak_rss_train_bytes", "memory.peak_rss_bytes",
                  "role", "model", "scale", "family", "error", "seed", "status", "method", "task", "run_id",
                  "train_config.learning_rate", "train_config.max_steps", "hyperparameters.learning_rate",
                  "hyperparameters.r", "prediction.peak_bytes", "eval_examples", "train_examples", "steps",
                  "metrics", "memory", "train_config", "hyperparameters", "tune", "train_loss_curve"]


@functools.cache
def _sample_records() -> tuple[str, ...]:
    """A few shipped records of different tasks and methods, as JSON (each case damages its own copies)."""
    from peftbench.results import ResultStore, reference_results_dir

    records = ResultStore(reference_results_dir() / "classification" / "runs.jsonl").records()
    return tuple(r.to_json() for r in records[:: max(1, len(records) // 8)][:8])


@functools.cache
def _classification_baselines() -> dict[str, Any]:
    """Chance and majority scores of the suite's tasks: read from its data files once, not once per case."""
    from peftbench.informativeness import suite_baselines

    return suite_baselines("classification")


@st.composite
def damaged_records(draw: Any) -> list[dict[str, Any]]:
    """Shipped records, some with one to three fields set to a value of another type (or removed)."""
    records = [json.loads(r) for r in _sample_records()]
    for record in draw(st.lists(st.sampled_from(records), min_size=1, max_size=4)):
        for name in draw(st.lists(st.sampled_from(DAMAGED_FIELDS), min_size=1, max_size=3, unique=True)):
            group, _, key = name.partition(".")
            target = record.get(group) if key else record
            if not isinstance(target, dict):
                continue
            if draw(st.integers(0, 9)) == 0:
                target.pop(key or group, None)
            else:
                target[key or group] = draw(st.sampled_from(HOSTILE_FIELD_VALUES))
    return records


def check_damaged_records(records: list[dict[str, Any]]) -> str:
    """Every reader of runs files gets past the damage: the table `results` prints, the recommender's evidence
    and resume's view; what is skipped is said in one line. "refused": some record was skipped."""
    from peftbench.cli.results import seed_summary
    from peftbench.informativeness import task_informativeness
    from peftbench.recommend.evidence import load_evidence
    from peftbench.results import ResultStore, latest_records, load_table

    with tempfile.TemporaryDirectory(prefix="peftbench-fuzz-") as folder:
        path = Path(folder) / "classification" / "runs.jsonl"
        path.parent.mkdir()
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            kept = latest_records([path])
            table = load_table([path])
            if not table.empty:
                seed_summary(table)
                task_informativeness(kept, _classification_baselines())  # what `results` prints, less the data
            load_evidence([path])
            ResultStore(path).latest(machine="fuzz")
    assert err.getvalue().count("\n") <= 1 and "Traceback" not in err.getvalue(), err.getvalue()[:500]
    assert all(r.run_id for r in kept)
    return "refused" if "skipped" in err.getvalue() else "accepted"


# ---- caches that can only make answers slower -----------------------------------------------------------------------
CACHE_STATES = ["a file", "under a file", "read-only, empty", "read-only, with entries", "machine-id a folder",
                "machine-id binary", "machine-id malformed", "machine-id of 1 MB", "estimates/ a file",
                "recommend/ a file"]
CACHE_OPS = ["machine id", "recommender store", "estimate answer store", "estimate end to end"]
_CACHE_ENV = ("PEFTBENCH_CACHE", "PEFTBENCH_MACHINE_ID", "PEFTBENCH_CACHE_WARNED")


@contextlib.contextmanager
def cache_in_state(state: str):
    """$PEFTBENCH_CACHE pointing at a cache in `state` for the block (the environment restored after); yields
    None where a read-only folder cannot be made (root without the right to mount)."""
    saved = {name: os.environ.get(name) for name in _CACHE_ENV}
    with tempfile.TemporaryDirectory(prefix="peftbench-fuzz-cache-") as folder:
        root = Path(folder) / "cache"
        made = _make_cache_state(root, state)
        for name in _CACHE_ENV:
            os.environ.pop(name, None)
        os.environ["PEFTBENCH_CACHE"] = str(root / "sub" if state == "under a file" else root)
        try:
            yield root if made else None
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            if state.startswith("read-only") and os.geteuid() == 0:
                subprocess_run(["umount", str(root)])
            elif state.startswith("read-only"):
                root.chmod(0o755)  # so that the temporary folder can be removed


def _make_cache_state(root: Path, state: str) -> bool:
    if state in ("a file", "under a file"):
        root.write_text("not a folder")
        return True
    root.mkdir()
    if state.startswith("read-only"):
        return _read_only(root, {"machine-id": "0123456789abcdef"} if "entries" in state else {})
    contents = {"machine-id binary": b"\xff\xfe\x00\x9c" * 8, "machine-id malformed": b"not an id!\n",
                "machine-id of 1 MB": b"a" * 2**20}
    if state == "machine-id a folder":
        (root / "machine-id").mkdir()
    elif state in contents:
        (root / "machine-id").write_bytes(contents[state])
    else:
        (root / state.split("/")[0]).write_text("not a folder")
    return True


def _read_only(root: Path, files: dict[str, str]) -> bool:
    if os.geteuid() != 0:
        for name, text in files.items():
            (root / name).write_text(text)
        root.chmod(0o555)
        return True
    if subprocess_run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root)]) != 0:
        return False
    for name, text in files.items():
        (root / name).write_text(text)
    return subprocess_run(["mount", "-o", "remount,ro", str(root)]) == 0


def subprocess_run(argv: list[str]) -> int:
    import subprocess

    return subprocess.run(argv, capture_output=True).returncode


def check_cache_state(case: tuple[str, str]) -> str | None:
    """One operation that reads and writes the cache, in an unusable cache: it answers, as with a usable one,
    with at most one warning line and no traceback. None (not counted) where the state cannot be made here."""
    state, operation = case
    with cache_in_state(state) as root:
        if root is None:
            return None
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            _cache_operation(operation)
    lines = err.getvalue().strip().splitlines()
    assert len(lines) <= 1 and all(line.startswith("peftbench: warning: ") for line in lines), (case, lines)
    return "accepted"


def _cache_operation(operation: str) -> None:
    if operation == "machine id":
        from peftbench.telemetry import machine_id

        assert machine_id() == machine_id()
    elif operation == "recommender store":
        from peftbench.recommend.store import read_json, write_json

        write_json("fuzz.json", {"k": 1})
        assert read_json("fuzz.json").get("k") in (1, None)
    elif operation == "estimate answer store":
        from peftbench.estimate.front_cache import front_load, front_store

        front_store("llama-3.2-1b", "lora", {"batch_size": 1}, {"answer": 1})
        assert front_load("llama-3.2-1b", "lora", {"batch_size": 1}) in ({"answer": 1}, None)
    else:
        code, out, err = call_cli(["estimate", "--model", "minilm", "--method", "lora", "--task-kind",
                                   "classification", "--hardware", "t4", "--json"], Path(tempfile.gettempdir()))
        assert code == 0 and json.loads(out), err[-500:]
        sys.stderr.write(err)


# ---- recommend --data files ---------------------------------------------------------------------------------------
DATA_KINDS = ["nested deep", "cells like NA", "binary", "empty", "byte-order mark", "missing column", "ragged csv",
              "one long line", "valid"]


@st.composite
def data_files(draw: Any) -> tuple[str, bytes]:
    """A user's data file for `recommend --data`: (file name, bytes)."""
    kind = draw(st.sampled_from(DATA_KINDS))
    rows = [(f"text {i} " * draw(st.integers(1, 5)), draw(st.sampled_from(["pos", "neg", "NA", "None", "null"])))
            for i in range(draw(st.integers(1, 30)))]
    if kind == "nested deep":
        depth = draw(st.integers(1, 200_000))
        return "d.jsonl", ('{"text": ' + "[" * depth + "]" * depth + ', "label": "a"}\n').encode()
    if kind in ("cells like NA", "valid", "byte-order mark"):
        text = "text,label\n" + "".join(f"{t},{label}\n" for t, label in rows)
        return "d.csv", (b"\xef\xbb\xbf" if kind == "byte-order mark" else b"") + text.encode()
    if kind == "binary":
        return draw(st.sampled_from(["d.csv", "d.jsonl", "d.json", "d.parquet"])), draw(st.binary(max_size=200))
    if kind == "empty":
        return draw(st.sampled_from(["d.csv", "d.jsonl", "d.json"])), b""
    if kind == "missing column":
        return "d.jsonl", "".join(json.dumps({"sentence": t}) + "\n" for t, _ in rows).encode()
    if kind == "ragged csv":
        return "d.csv", ("text,label\n" + "".join(f"{t},{label},extra\n" for t, label in rows)).encode()
    return "d.jsonl", (json.dumps({"text": "x" * 2_000_000, "label": "a"}) + "\n").encode()


def check_data_file(case: tuple[str, bytes]) -> str:
    """`recommend --data FILE` profiles the file as `run` would read it, or refuses it in one line: never a
    crash (a deep JSON line once killed the process), and CSV cells like NA stay labels."""
    from peftbench.errors import UserError, one_line
    from peftbench.recommend.query import resolve_task

    name, content = case
    with tempfile.TemporaryDirectory(prefix="peftbench-fuzz-") as folder:
        path = Path(folder) / name
        path.write_bytes(content)
        try:
            query = resolve_task("classification", [], data=path, model="minilm")
        except UserError as exc:
            assert "\n" not in one_line(str(exc)) and str(exc).startswith(f"--data {path}"), str(exc)[:300]
            return "refused"
    if name.endswith(".csv") and content.startswith(b"text,label\n"):
        labels = {line.rsplit(",", 1)[1] for line in content.decode().splitlines()[1:]}
        assert query.num_labels == len(labels), (query.num_labels, labels)
    return "accepted"
