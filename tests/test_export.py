"""`peftbench.export`: each export is read back by the named tool's own parser, and the decision's settings are
found in what it parsed.

peft and TRL are read in this interpreter (TRL is the `export` extra). LLaMA-Factory and axolotl pin peft and
transformers below peftbench's own ranges (LLaMA-Factory 0.9.5: peft<=0.18.1, transformers<=5.6.0; axolotl
0.19.0: peft==0.20.0, transformers==5.16.1), so neither installs beside peftbench. Their configs are read two
ways: by the tool's own parser, in a subprocess of this interpreter with the tools' code from `.tool-parsers/`
(`.ci/install` puts it there, `.ci/tool-parsers.txt` says why and which versions), or in the interpreter named by
PEFTBENCH_LLAMAFACTORY_PYTHON / PEFTBENCH_AXOLOTL_PYTHON (a venv with the tool and its own pins; skipped, with the
reason, where there is none of these); and always against the fields and types transcribed from the tool's source
at those versions.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from peftbench.errors import UserError
from peftbench.export import (
    ExportSetting,
    export,
    export_recommendation,
    max_steps_from_override,
    precision_from_override,
    setting_from_candidate,
)
from peftbench.methods import get_method, registry

LLAMA = "meta-llama/Llama-3.1-8B"
LORA_HPS = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"}


def setting(method: str = "lora", **changes: Any) -> ExportSetting:
    """The 24GB summarization answer for llama-3.1-8b, as `recommend` gives it, with `changes`."""
    hps = dict(LORA_HPS) if method in ("lora", "dora", "rslora", "qlora") else {
        k: v for k, v in get_method(method).defaults.items() if k != "learning_rate"}
    if method == "dora":
        hps["use_dora"] = True
    base = dict(model=LLAMA, method=method, hyperparameters=hps, learning_rate=7.1e-5, batch_size=4,
                gradient_accumulation=4, gradient_checkpointing=True, precision="bf16", epochs=3.0, max_steps=938,
                seq_len=512, model_type="llama")
    return ExportSetting(**{**base, **changes})


@pytest.fixture
def bf16_gpu(monkeypatch):
    """The configs are for the recommended GPU. transformers' TrainingArguments refuses bf16 where the machine
    cannot compute in it, which this CPU cannot: the check is told it can, as it would be on that card."""
    import transformers.training_args

    monkeypatch.setattr(transformers.training_args, "is_torch_bf16_gpu_available", lambda: True)


# ---- peft ------------------------------------------------------------------------------------------------------


def test_peft_lora_reads_back_through_peft_and_transformers(tmp_path, bf16_gpu):
    from peft import LoraConfig, PeftConfig
    from transformers import BitsAndBytesConfig, HfArgumentParser, TrainingArguments

    written = export(setting("qlora"), "peft", tmp_path)
    assert sorted(p.name for p in written) == ["adapter_config.json", "model_init_kwargs.json", "training_args.json"]
    config = PeftConfig.from_pretrained(str(tmp_path))
    assert isinstance(config, LoraConfig)
    assert (config.r, config.lora_alpha, config.lora_dropout, config.target_modules) == (16, 32, 0.05, "all-linear")
    assert (config.base_model_name_or_path, config.task_type) == (LLAMA, "CAUSAL_LM")
    (args,) = HfArgumentParser(TrainingArguments).parse_json_file(str(tmp_path / "training_args.json"))
    assert (args.learning_rate, args.per_device_train_batch_size, args.gradient_accumulation_steps) == (7.1e-5, 4, 4)
    assert (args.gradient_checkpointing, args.bf16, args.fp16, args.num_train_epochs, args.max_steps) == (
        True, True, False, 3.0, 938)
    init = json.loads((tmp_path / "model_init_kwargs.json").read_text())
    assert init["dtype"] == "bfloat16"
    quantization = BitsAndBytesConfig.from_dict(init["quantization_config"])
    assert quantization.load_in_4bit and quantization.bnb_4bit_quant_type == "nf4"
    assert quantization.bnb_4bit_use_double_quant


PEFT_METHODS = sorted(name for name, method in registry().items() if method.peft_config)


@pytest.mark.parametrize("method", PEFT_METHODS)
def test_every_peft_method_saves_its_registry_config_class(tmp_path, method):
    import peft

    config = peft.PeftConfig.from_pretrained(str(export(setting(method), "peft", tmp_path)[0].parent))
    assert type(config).__name__ == get_method(method).peft_config
    for key, value in setting(method).hyperparameters.items():
        if value is not None:
            expected = set(value) if isinstance(value, list) else value
            assert getattr(config, key) == expected, key
    if method == "adalora":  # its rank schedule spans the run: the run line's optimizer steps
        assert config.total_step == 938


def test_peft_task_type_follows_the_task_and_architecture(tmp_path):
    from peft import PeftConfig

    export(setting(task_kind="classification"), "peft", tmp_path / "cls")
    export(setting(architecture="encoder-decoder", model="google/flan-t5-base", model_type="t5"), "peft",
           tmp_path / "t5")
    assert PeftConfig.from_pretrained(str(tmp_path / "cls")).task_type == "SEQ_CLS"
    assert PeftConfig.from_pretrained(str(tmp_path / "t5")).task_type == "SEQ_2_SEQ_LM"


# ---- TRL -------------------------------------------------------------------------------------------------------


def trl_parse(path: Path) -> tuple[Any, ...]:
    """What `trl sft --config PATH` parses, unknown keys refused (the CLI itself only warns of them)."""
    from trl.scripts.sft import make_parser

    return make_parser().parse_args_and_config(["--config", str(path)])


@pytest.mark.parametrize("method", ["lora", "dora", "qlora", "full"])
def test_trl_config_parses_with_trl_sft_parser(tmp_path, bf16_gpu, method):
    from trl import SFTConfig, get_peft_config, get_quantization_config

    (path,) = export(setting(method), "trl", tmp_path)
    script, training, model, data = trl_parse(path)
    assert isinstance(training, SFTConfig)
    assert (training.learning_rate, training.per_device_train_batch_size, training.gradient_accumulation_steps) == (
        7.1e-5, 4, 4)
    assert (training.gradient_checkpointing, training.bf16, training.fp16) == (True, True, False)
    assert (training.num_train_epochs, training.max_steps, training.max_length) == (3.0, 938, 512)
    assert (model.model_name_or_path, model.dtype) == (LLAMA, "bfloat16")
    assert data.datasets[0].data_files == "YOUR_DATA.jsonl"
    lora = get_peft_config(model)
    if method == "full":
        assert lora is None and get_quantization_config(model) is None
        return
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.target_modules) == (16, 32, 0.05, "all-linear")
    assert lora.use_dora == (method == "dora")
    quantization = get_quantization_config(model)
    assert (quantization is not None and quantization.load_in_4bit) == (method == "qlora")


def test_trl_fp16_card_and_data_file(tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    data.write_text('{"source": "a", "target": "b"}\n')
    (path,) = export(setting("full", precision="fp16", data=data), "trl", tmp_path / "out")
    _, training, model, mixture = trl_parse(path)
    assert (training.bf16, training.fp16) == (False, True)
    assert model.dtype == "float32"  # fp16 autocast over fp32 weights: a gradient scaler cannot unscale fp16
    assert (mixture.datasets[0].path, mixture.datasets[0].data_files) == ("json", str(data))
    assert "rename train.jsonl's source and target" in capsys.readouterr().err


# ---- LLaMA-Factory ---------------------------------------------------------------------------------------------

# Run by the tool's own interpreter: its full parser (`get_train_args`, as `llamafactory-cli train` calls it) and
# its dataset_info.json reader, printing what they parsed.
LLAMAFACTORY_PARSE = """
import json, os, sys
os.environ.setdefault("DISABLE_VERSION_CHECK", "1")  # the venv's own pins; the parsing is what is checked
import yaml, transformers.training_args
import llamafactory.hparams.parser as parser
try:
    from llamafactory.data.parser import get_dataset_list
except (ImportError, OSError):  # its package __init__ imports torchaudio (audio inputs), built for another torch
    import types, llamafactory
    data_package = types.ModuleType("llamafactory.data")
    data_package.__path__ = [os.path.join(os.path.dirname(llamafactory.__file__), "data")]
    sys.modules["llamafactory.data"] = data_package
    from llamafactory.data.parser import get_dataset_list
parser.is_torch_bf16_gpu_available = transformers.training_args.is_torch_bf16_gpu_available = lambda: True
out = []
for path in sys.argv[1:]:
    model, data, training, finetuning, _ = parser.get_train_args(yaml.safe_load(open(path)))
    (attr,) = get_dataset_list(data.dataset, data.dataset_dir)
    out.append({**{k: getattr(finetuning, k) for k in ("finetuning_type", "lora_rank", "lora_alpha", "lora_dropout",
                "lora_target", "use_dora", "oft_rank", "oft_block_size", "oft_target", "pure_bf16")},
                **{k: getattr(training, k) for k in ("learning_rate", "per_device_train_batch_size",
                "gradient_accumulation_steps", "num_train_epochs", "max_steps", "bf16", "fp16")},
                "model": model.model_name_or_path, "quantization_bit": model.quantization_bit,
                "gradient_checkpointing": not model.disable_gradient_checkpointing,
                "compute_dtype": str(model.compute_dtype), "cutoff_len": data.cutoff_len,
                "data_file": attr.dataset_name, "prompt": attr.prompt, "response": attr.response})
print("PARSED " + json.dumps(out))
"""


TOOL_PARSERS = Path(__file__).resolve().parents[1] / ".tool-parsers"


def tool_python(package: str, variable: str) -> str | None:
    """An interpreter that has `package`: this one (with `.tool-parsers/` on its path where the package is there),
    else the one `variable` names."""
    import importlib.util

    if importlib.util.find_spec(package) is not None or (TOOL_PARSERS / package).is_dir():
        return sys.executable
    named = os.environ.get(variable)
    return named if named and shutil.which(named) else None


def parse_with_tool(python: str, script: str, paths: list[Path], cwd: Path) -> list[dict[str, Any]]:
    env = dict(os.environ)
    if python == sys.executable and TOOL_PARSERS.is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TOOL_PARSERS), env.get("PYTHONPATH")]))
    done = subprocess.run([python, "-c", script, *map(str, paths)], capture_output=True, text=True, cwd=cwd,
                          timeout=600, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("PARSED ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1][len("PARSED "):])


def llamafactory_exports(tmp_path: Path) -> dict[str, Path]:
    data = tmp_path / "train.jsonl"
    data.write_text('{"source": "a", "target": "b"}\n')
    cases = {"lora": setting("lora", data=data), "qlora": setting("qlora"), "oft": setting("oft"),
             "full-fp16": setting("full", precision="fp16", gradient_checkpointing=False),
             "dora-autocast": setting("dora", precision="fp32", autocast="bf16")}
    return {name: export(case, "llamafactory", tmp_path / name)[0] for name, case in cases.items()}


def test_llamafactory_config_parses_with_llamafactory(tmp_path):
    python = tool_python("llamafactory", "PEFTBENCH_LLAMAFACTORY_PYTHON")
    if python is None:
        pytest.skip("LLaMA-Factory is not installed here (its peft/transformers pins conflict with peftbench's): "
                    "run .ci/install (it puts its parser in .tool-parsers/) or set PEFTBENCH_LLAMAFACTORY_PYTHON to a "
                    "venv's python with llamafactory; the transcribed-schema "
                    "test below still runs")
    paths = llamafactory_exports(tmp_path)
    parsed = dict(zip(paths, parse_with_tool(python, LLAMAFACTORY_PARSE, list(paths.values()), tmp_path),
                      strict=True))
    lora = parsed["lora"]
    assert (lora["finetuning_type"], lora["lora_rank"], lora["lora_alpha"], lora["lora_dropout"]) == (
        "lora", 16, 32, 0.05)
    assert (lora["lora_target"], lora["pure_bf16"], lora["bf16"], lora["compute_dtype"]) == (
        ["all"], True, False, "torch.bfloat16")
    assert (lora["learning_rate"], lora["per_device_train_batch_size"], lora["gradient_accumulation_steps"]) == (
        7.1e-5, 4, 4)
    assert (lora["num_train_epochs"], lora["max_steps"], lora["cutoff_len"], lora["model"]) == (3.0, 938, 512, LLAMA)
    assert lora["gradient_checkpointing"] and lora["quantization_bit"] is None
    assert (lora["data_file"], lora["prompt"], lora["response"]) == (str(tmp_path / "train.jsonl"), "source",
                                                                     "target")
    assert parsed["qlora"]["quantization_bit"] == 4 and parsed["qlora"]["data_file"] == "YOUR_DATA.jsonl"
    assert (parsed["oft"]["finetuning_type"], parsed["oft"]["oft_rank"], parsed["oft"]["oft_block_size"]) == (
        "oft", 0, 32)
    full = parsed["full-fp16"]
    assert (full["finetuning_type"], full["fp16"], full["bf16"], full["pure_bf16"]) == ("full", True, False, False)
    assert not full["gradient_checkpointing"]
    dora = parsed["dora-autocast"]
    assert (dora["use_dora"], dora["bf16"], dora["pure_bf16"]) == (True, True, False)


@dataclasses.dataclass
class LlamaFactoryOwnFields:
    """LLaMA-Factory 0.9.5's fields that the export writes, transcribed from src/llamafactory/hparams/
    model_args.py, data_args.py and finetuning_args.py (names, types, choices and defaults as declared there;
    the training fields are transformers' Seq2SeqTrainingArguments, which its parser joins to these)."""

    model_name_or_path: str | None = None
    quantization_method: Literal["bnb", "gptq", "awq", "aqlm", "quanto", "eetq", "hqq", "mxfp4", "fp8"] = "bnb"
    quantization_bit: int | None = None
    quantization_type: Literal["fp4", "nf4"] = "nf4"
    double_quantization: bool = True
    disable_gradient_checkpointing: bool = False
    template: str | None = None
    dataset: str | None = None
    dataset_dir: str = "data"
    cutoff_len: int = 2048
    stage: Literal["pt", "sft", "rm", "ppo", "dpo", "kto"] = "sft"
    finetuning_type: Literal["lora", "oft", "freeze", "full"] = "lora"
    pure_bf16: bool = False
    lora_rank: int = 8
    lora_alpha: int | None = None
    lora_dropout: float = 0.0
    lora_target: str = "all"
    use_rslora: bool = False
    use_dora: bool = False
    oft_rank: int = 0
    oft_block_size: int = 32
    oft_target: str = "all"
    module_dropout: float = 0.0


def test_llamafactory_config_matches_its_transcribed_schema(tmp_path, bf16_gpu):
    """Every key is one of LLaMA-Factory's or transformers' fields with a value of the declared type (parsed as
    its `_parse_args` does: HfArgumentParser.parse_dict, extra keys refused), its cross-field rules hold
    (quantization only with lora/oft, DoRA only with lora), and dataset_info.json is the alpaca mapping its
    data/parser.py reads."""
    from transformers import HfArgumentParser, Seq2SeqTrainingArguments

    parsed = {}
    for name, path in llamafactory_exports(tmp_path).items():
        own, training = HfArgumentParser((LlamaFactoryOwnFields, Seq2SeqTrainingArguments)).parse_dict(
            yaml.safe_load(path.read_text()), allow_extra_keys=False)
        parsed[name] = own, training
        assert own.stage == "sft" and training.do_train, name
        assert own.quantization_bit is None or own.finetuning_type in ("lora", "oft"), name
        assert not own.use_dora or own.finetuning_type == "lora", name
        info = json.loads((Path(own.dataset_dir) / "dataset_info.json").read_text())
        assert info[own.dataset]["formatting"] == "alpaca", name
        assert info[own.dataset]["columns"] == {"prompt": "source", "response": "target"}, name
    lora, training = parsed["lora"]
    assert (lora.finetuning_type, lora.lora_rank, lora.lora_alpha, lora.lora_target, lora.pure_bf16) == (
        "lora", 16, 32, "all", True)
    assert (training.learning_rate, training.per_device_train_batch_size, training.gradient_accumulation_steps,
            training.max_steps, training.bf16) == (7.1e-5, 4, 4, 938, False)
    assert (parsed["qlora"][0].quantization_bit, parsed["oft"][0].finetuning_type) == (4, "oft")
    assert parsed["full-fp16"][1].fp16 and parsed["full-fp16"][0].disable_gradient_checkpointing
    assert parsed["dora-autocast"][0].use_dora and parsed["dora-autocast"][1].bf16


# ---- axolotl ---------------------------------------------------------------------------------------------------

# Run by the tool's own interpreter: `validate_config`, which `axolotl train` runs on the YAML before anything
# loads, with the capabilities of one bf16-capable GPU.
AXOLOTL_PARSE = """
import json, sys
import yaml
from axolotl.utils.config import validate_config
from axolotl.utils.dict import DictDefault
gpu = {"bf16": True, "fp8": False, "n_gpu": 1, "n_node": 1, "compute_capability": "sm_86"}
out = []
for path in sys.argv[1:]:
    cfg = validate_config(DictDefault(yaml.safe_load(open(path))), capabilities=gpu,
                          env_capabilities={"torch_version": "2.13.0"})
    out.append({k: cfg.get(k) for k in ("base_model", "adapter", "load_in_4bit", "lora_r", "lora_alpha",
                "lora_dropout", "lora_target_linear", "peft_use_dora", "micro_batch_size",
                "gradient_accumulation_steps", "learning_rate", "num_epochs", "max_steps", "bf16", "fp16",
                "gradient_checkpointing", "sequence_len")} | {"dataset": dict(cfg["datasets"][0])})
print("PARSED " + json.dumps(out, default=str))
"""


def axolotl_exports(tmp_path: Path) -> dict[str, Path]:
    cases = {"lora": setting("lora"), "qlora": setting("qlora"), "dora": setting("dora"),
             "full-fp16": setting("full", precision="fp16")}
    return {name: export(case, "axolotl", tmp_path / name)[0] for name, case in cases.items()}


def test_axolotl_config_validates_with_axolotl(tmp_path):
    python = tool_python("axolotl", "PEFTBENCH_AXOLOTL_PYTHON")
    if python is None:
        pytest.skip("axolotl is not installed here (its peft/transformers pins conflict with peftbench's): run "
                    ".ci/install (it puts its parser in .tool-parsers/) or set PEFTBENCH_AXOLOTL_PYTHON to a venv's "
                    "python with axolotl; the transcribed-schema test below "
                    "still runs")
    paths = axolotl_exports(tmp_path)
    parsed = dict(zip(paths, parse_with_tool(python, AXOLOTL_PARSE, list(paths.values()), tmp_path), strict=True))
    lora = parsed["lora"]
    assert (lora["base_model"], lora["adapter"], lora["lora_r"], lora["lora_alpha"], lora["lora_dropout"]) == (
        LLAMA, "lora", 16, 32, 0.05)
    assert lora["lora_target_linear"] and lora["gradient_checkpointing"] and lora["bf16"] is True
    assert (lora["micro_batch_size"], lora["gradient_accumulation_steps"], lora["learning_rate"]) == (4, 4, 7.1e-5)
    assert (lora["num_epochs"], lora["max_steps"], lora["sequence_len"]) == (3.0, 938, 512)
    assert lora["dataset"]["type"]["field_instruction"] == "source"
    assert (parsed["qlora"]["adapter"], parsed["qlora"]["load_in_4bit"]) == ("qlora", True)
    assert parsed["dora"]["peft_use_dora"] is True
    assert parsed["full-fp16"]["adapter"] is None and parsed["full-fp16"]["fp16"] is True


def axolotl_transcribed_schema() -> type:
    """axolotl 0.19.0's fields that the export writes, transcribed from src/axolotl/utils/schemas/ (config.py,
    model.py, peft.py, training.py, datasets.py), as a pydantic model that refuses any other key, with its
    built-in adapters and its rule that QLoRA loads in 4 bits (peft.py's validate_adapter, validate_qlora)."""
    from pydantic import BaseModel, ConfigDict, model_validator

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)

    class UserDefinedPrompterType(Strict):
        field_instruction: str | None = None
        field_output: str | None = None
        format: str | None = None
        no_input_format: str | None = None

    class SFTDataset(Strict):
        path: str | None = None
        ds_type: str | None = None
        type: str | UserDefinedPrompterType | None = None

    class AxolotlFields(Strict):
        base_model: str
        adapter: Literal["lora", "qlora", "llama-adapter"] | None = None
        load_in_4bit: bool | None = None
        lora_r: int | None = None
        lora_alpha: int | None = None
        lora_dropout: float | None = None
        lora_target_linear: bool | None = None
        lora_target_modules: str | list[str] | None = None
        peft_use_dora: bool | None = None
        peft_use_rslora: bool | None = None
        datasets: list[SFTDataset]
        output_dir: str = "./model-out"
        micro_batch_size: int | None = 1
        gradient_accumulation_steps: int | None = 1
        learning_rate: str | float
        num_epochs: float = 1.0
        max_steps: int | None = None
        gradient_checkpointing: Literal["offload", "offload_disk"] | bool | None = False
        bf16: Literal["auto"] | bool | None = "auto"
        fp16: bool | None = None
        sequence_len: int = 512

        @model_validator(mode="after")
        def qlora_loads_in_4bit(self):
            if self.adapter == "qlora" and not self.load_in_4bit:
                raise ValueError("Require cfg.load_in_4bit to be True for qlora")
            if self.load_in_4bit and not self.adapter:
                raise ValueError("load_in_4bit is not supported without setting an adapter")
            return self

    return AxolotlFields


def test_axolotl_config_matches_its_transcribed_schema(tmp_path):
    schema = axolotl_transcribed_schema()
    parsed = {name: schema.model_validate(yaml.safe_load(path.read_text()))
              for name, path in axolotl_exports(tmp_path).items()}
    lora = parsed["lora"]
    assert (lora.adapter, lora.lora_r, lora.lora_alpha, lora.lora_dropout, lora.lora_target_linear) == (
        "lora", 16, 32, 0.05, True)
    assert (lora.micro_batch_size, lora.gradient_accumulation_steps, lora.learning_rate, lora.max_steps) == (
        4, 4, 7.1e-5, 938)
    assert (lora.bf16, lora.fp16, lora.gradient_checkpointing, lora.sequence_len) == (True, False, True, 512)
    assert (parsed["qlora"].adapter, parsed["qlora"].load_in_4bit) == ("qlora", True)
    assert parsed["dora"].peft_use_dora and parsed["full-fp16"].adapter is None and parsed["full-fp16"].fp16


# ---- what cannot be expressed, and the interface ---------------------------------------------------------------


@pytest.mark.parametrize(("method", "tool", "says"), [
    ("boft", "llamafactory", "LLaMA-Factory cannot express boft"),
    ("ia3", "trl", "export it with --export peft"),
    ("prompt_tuning", "axolotl", "axolotl cannot express prompt_tuning"),
    ("full", "peft", "export it with --export trl or llamafactory or axolotl"),
    ("adapter", "peft", "peftbench's own implementation"),
    ("bitfit", "trl", "no supported tool expresses it"),
])
def test_an_inexpressible_method_is_one_line_and_writes_nothing(tmp_path, method, tool, says):
    with pytest.raises(UserError, match=says) as refused:
        export(setting(method), tool, tmp_path / "out")
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("tool", ["trl", "llamafactory", "axolotl"])
def test_sft_tools_refuse_classification_and_seq2seq(tmp_path, tool):
    with pytest.raises(UserError, match="--export peft"):
        export(setting(task_kind="classification"), tool, tmp_path / "a")
    with pytest.raises(UserError, match="encoder-decoder"):
        export(setting(architecture="encoder-decoder"), tool, tmp_path / "b")
    assert not list(tmp_path.iterdir())


def test_placeholder_data_is_said_on_stderr(tmp_path, capsys):
    export(setting(), "axolotl", tmp_path)
    assert "no --data: axolotl.yaml names YOUR_DATA.jsonl, a placeholder" in capsys.readouterr().err


def test_setting_from_a_real_recommendation(tmp_path):
    """The 24GB summarization answer: the pick's settings reach the setting, the preset becomes its hub id, and
    the run line's dtype and steps are kept."""
    from peftbench.recommend.engine import recommend

    # the query of test_recommend_answer.py, so that one test session traces its estimates once
    rec = recommend("summarization", gpu="24GB", model="llama-3.1-8b", train_examples=5000, seq_len=512).to_dict()
    pick = rec["ranking"][0]
    built = setting_from_candidate(pick, rec["model"], precision_from_override(pick["override"]), 3.0, None,
                                   max_steps=max_steps_from_override(pick["override"]))
    assert (built.model, built.method, built.architecture, built.model_type) == (LLAMA, pick["method"], "decoder",
                                                                               "llama")
    assert (built.batch_size, built.gradient_accumulation) == (pick["batch_size"], pick["gradient_accumulation"])
    assert built.learning_rate == pick["hyperparameters"]["learning_rate"] and built.precision == "bf16"
    assert f"train.max_steps={built.max_steps}" in pick["override"]
    (path,) = export_recommendation(rec, "axolotl", tmp_path)
    assert yaml.safe_load(path.read_text())["micro_batch_size"] == pick["batch_size"]


def test_precision_of_the_run_line():
    assert precision_from_override("peftbench run ... train.dtype=fp16 train.max_steps=9") == "fp16"
    assert max_steps_from_override("train.dtype=bf16") is None
    with pytest.raises(UserError, match="train.dtype"):
        precision_from_override("peftbench run methods=[lora]")


def test_recommend_cli_refuses_export_dir_without_export(capsys):
    from peftbench.cli import main

    assert main(["recommend", "--task", "summarization", "--export-dir", "x"]) == 2
    assert "--export-dir applies only with --export" in capsys.readouterr().err


# ---- the tool runs it ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_trl_sft_trains_one_step_from_the_export(tmp_path):
    """`trl sft --config` runs the export as written: one optimizer step of LoRA on the packaged SmolLM2 in fp32
    on this CPU, from a prompt/completion file."""
    from peftbench.export import loadable_model

    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Say {i}:", "completion": f" {i}"}) + "\n" for i in range(8)))
    exported = setting("lora", model=loadable_model("smollm2-135m"), model_type="llama", precision="fp32",
                       batch_size=2, gradient_accumulation=2, max_steps=1, seq_len=32, data=data,
                       gradient_checkpointing=False)
    (path,) = export(exported, "trl", tmp_path / "export")
    trl = shutil.which("trl", path=str(Path(sys.executable).parent)) or "trl"
    done = subprocess.run([trl, "sft", "--config", str(path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "output" / "adapter_config.json").is_file()
