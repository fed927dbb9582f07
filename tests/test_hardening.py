"""Crashes and loopholes found by issue 13's hostile-input pass, pinned as unit tests (the one-line CLI
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
