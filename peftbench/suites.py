"""Suites: YAML files declaring tasks, their data, the default model, methods and seeds.

peftbench's own suites ship inside the package (`peftbench.suite_files`; `suites/` in the repository);
`suite=PATH.yaml` runs any other. A task's local data files resolve against its YAML file's folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from peftbench.errors import UserError, shown
from peftbench.paths import check_name, exists, is_file, suites_dir
from peftbench.validation import INT_MAX, boolean, number, positive_int, seed
from peftbench.vocabulary import TASK_KIND_NAMES

KIND_FIELDS = {
    "classification": ("text", "label"),
    "generation": ("source", "target"),
    "multiple_choice": ("question", "choices", "answer"),
}
DEFAULT_METRICS = {
    "classification": ["accuracy", "macro_f1"],
    "generation": ["rouge1", "rouge2", "rougeL", "bleu", "chrf"],
    "multiple_choice": ["accuracy"],
}


# Fine-tuning schedules run hundreds to hundreds of thousands of optimizer steps. Ten million micro-batches
# is beyond any of them (about six days even at 50 ms a micro-batch), so a larger count is a typo like
# `max_steps=1e23` — which would otherwise spin until the run's timeout, as the worker walks every planned
# micro-batch before training (training.longest_padded_batch).
MAX_MICRO_BATCHES = 10_000_000


@dataclass(frozen=True)
class TrainConfig:
    """How one run trains. Suite YAML sets defaults, tasks override, `train.KEY=VALUE` overrides both."""

    max_steps: int = 60
    batch_size: int = 8
    eval_batch_size: int = 32
    learning_rate: float | None = None  # None: the method's default times lr_multiplier
    # Short schedules (tens of steps, as in the CPU suites) need larger steps than the defaults, which
    # suit runs of thousands of steps. Scaling every method's default by one factor keeps their ratios.
    lr_multiplier: float = 1.0
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    dtype: str = "fp32"
    gradient_checkpointing: bool = False
    # `batch_size` is the micro-batch: each optimizer step accumulates this many micro-batches' gradients
    # (effective batch = batch_size x gradient_accumulation_steps); `max_steps` counts optimizer steps.
    gradient_accumulation_steps: int = 1
    threads: int = 1  # CPU threads; 1 keeps timings stable when anything else runs on the machine

    @classmethod
    def build(cls, *layers: dict[str, Any]) -> TrainConfig:
        merged: dict[str, Any] = {}
        for layer in layers:
            if layer is not None and not isinstance(layer, dict):
                raise UserError(f"train must be a mapping of training keys (e.g. {{max_steps: 20}}), "
                                f"got {shown(layer)}")
            merged.update(layer or {})
        valid = {f.name: f for f in dataclasses.fields(cls)}
        for key in merged:
            if key not in valid:
                raise UserError(f"unknown training key 'train.{key}' (valid: {', '.join(valid)})")
        config = cls(**merged)
        config.validate()
        return config

    def validate(self) -> None:
        """Every value's type and range; bools are not numbers, and nan or inf are not numbers either."""
        positive_int(self.max_steps, "train.max_steps", high=MAX_MICRO_BATCHES)
        for name in ("batch_size", "eval_batch_size", "threads", "gradient_accumulation_steps"):
            positive_int(getattr(self, name), f"train.{name}", high=INT_MAX)
        if self.max_steps * self.gradient_accumulation_steps > MAX_MICRO_BATCHES:
            per_step = f" of {self.gradient_accumulation_steps} micro-batches" \
                if self.gradient_accumulation_steps > 1 else ""
            raise UserError(f"train.max_steps must be at most {MAX_MICRO_BATCHES // self.gradient_accumulation_steps}"
                            f" optimizer steps{per_step} ({MAX_MICRO_BATCHES} micro-batches in all), "
                            f"got {shown(self.max_steps)}")
        if self.learning_rate is not None:
            number(self.learning_rate, "train.learning_rate", low=0.0, low_open=True)
        number(self.lr_multiplier, "train.lr_multiplier", low=0.0, low_open=True)
        number(self.weight_decay, "train.weight_decay", low=0.0)
        number(self.warmup_ratio, "train.warmup_ratio", low=0.0, high=1.0)
        number(self.max_grad_norm, "train.max_grad_norm", low=0.0)  # 0: no clipping
        if self.dtype not in ("fp32", "bf16", "fp16"):
            raise UserError(f"train.dtype must be fp32, bf16 or fp16, got {shown(self.dtype)}")
        boolean(self.gradient_checkpointing, "train.gradient_checkpointing")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str
    data: dict[str, Any]
    fields: dict[str, str]
    model: str
    sizes: dict[str, int]
    max_length: int = 128
    max_target_length: int = 32
    prompt: str | None = None
    labels: tuple[str, ...] | None = None
    metrics: tuple[str, ...] = ()
    train: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    model: str
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    train: dict[str, Any]
    tasks: tuple[TaskSpec, ...]
    path: Path
    hub_tasks: tuple[TaskSpec, ...] = ()  # need the Hugging Face hub: run only when named in tasks=[...]

    def task(self, name: str) -> TaskSpec:
        for task in self.tasks + self.hub_tasks:
            if task.name == name:
                return task
        names = ", ".join(t.name for t in self.tasks + self.hub_tasks)
        raise UserError(f"suite '{self.name}' has no task '{name}' (tasks: {names})")


def available_suites(directory: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (directory or suites_dir()).glob("*.yaml"))


def suite_path(name: str, directory: Path | None = None) -> Path:
    """A `suite=` value: a YAML file, or the name of a shipped suite (a plain identifier)."""
    candidate = Path(name).expanduser()
    if candidate.suffix in (".yaml", ".yml"):
        if not is_file(candidate):
            raise UserError(f"suite file {shown(name)} does not exist")
        return candidate.resolve()
    directory = directory or suites_dir()
    check_name(name, "suite")
    path = directory / f"{name}.yaml"
    if not is_file(path):
        raise UserError(f"unknown suite {shown(name)} (available: {', '.join(available_suites(directory))}, "
                        "or a path to a .yaml file)")
    return path


SUITE_KEYS = ("name", "description", "model", "methods", "seeds", "train", "tasks", "hub_tasks")


def load_suite(name: str, directory: Path | None = None) -> Suite:
    """Parse and validate a suite; every problem is a UserError naming the file and the field."""
    path = suite_path(name, directory)
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a suite must be a mapping with 'name' and 'tasks'")
    unknown = set(raw) - set(SUITE_KEYS)
    if unknown:
        raise UserError(f"{path}: unknown suite keys {sorted(map(str, unknown))} (valid: {', '.join(SUITE_KEYS)})")
    suite_name = check_name(raw.get("name", path.stem), f"{path}: suite name")  # its results folder
    tasks = raw.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise UserError(f"{path}: 'tasks' must be a non-empty list")
    default_model = _text(raw.get("model", "minilm"), f"{path}: model")
    parsed = tuple(_parse_task(t, default_model, path) for t in tasks)
    hub_raw = raw.get("hub_tasks") or []
    if not isinstance(hub_raw, list):
        raise UserError(f"{path}: 'hub_tasks' must be a list of tasks")
    hub = tuple(_parse_task(t, default_model, path) for t in hub_raw)
    offline = [t.name for t in hub if t.data["source"] != "hub"]
    if offline:
        raise UserError(f"{path}: hub_tasks {offline} must have data.source hub")
    names = [t.name for t in parsed + hub]
    if len(set(names)) != len(names):
        raise UserError(f"{path}: duplicate task names in {names}")
    methods = raw.get("methods") or ["lora"]
    methods = [methods] if isinstance(methods, str) else methods
    if not isinstance(methods, list) or not all(isinstance(m, str) and m for m in methods):
        raise UserError(f"{path}: methods must be a list of method names, got {shown(raw.get('methods'))}")
    seeds = raw.get("seeds")
    seeds = [0] if seeds is None else [seeds] if isinstance(seeds, int) else seeds
    if not isinstance(seeds, list) or not seeds:
        raise UserError(f"{path}: seeds must be a list of integers, got {shown(raw.get('seeds'))}")
    suite = Suite(name=suite_name, description=str(raw.get("description") or ""), model=default_model,
                  methods=tuple(methods), seeds=tuple(seed(s, f"{path}: seeds") for s in seeds),
                  train=_mapping(raw.get("train"), f"{path}: train"), tasks=parsed, path=path, hub_tasks=hub)
    TrainConfig.build(suite.train)
    for task in parsed + hub:
        TrainConfig.build(suite.train, task.train)
    return suite


def _read_yaml(path: Path) -> Any:
    """The suite file's value, read by `peftbench.safe_yaml` (no aliases, no repeated keys, bounded depth),
    and no more of the file than a suite can need: a huge file is refused before it is parsed."""
    from peftbench import safe_yaml

    with path.open("rb") as handle:
        data = handle.read(safe_yaml.MAX_SUITE_BYTES + 1)
    if len(data) > safe_yaml.MAX_SUITE_BYTES:
        raise UserError(f"{path}: larger than {safe_yaml.MAX_SUITE_BYTES} bytes; a suite file is a few KB")
    try:
        return safe_yaml.load(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except safe_yaml.Refused as exc:
        raise UserError(f"{path}{f' at line {exc.line}' if exc.line else ''}: {exc.reason}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"malformed YAML in {path}{where}: {getattr(exc, 'problem', exc)}") from None


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where} must be a non-empty string, got {shown(value)}")
    return value


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise UserError(f"{where} must be a mapping of names to values, got {shown(value)}")
    return dict(value)


def _parse_task(raw: Any, default_model: str, path: Path) -> TaskSpec:
    if not isinstance(raw, dict) or "name" not in raw:
        raise UserError(f"{path}: every task needs a 'name'")
    name = raw["name"]
    if not isinstance(name, (str, int)) or isinstance(name, bool) or not str(name).strip() \
            or not str(name).isprintable():
        raise UserError(f"{path}: task name {shown(name)} must be a non-empty single-line string")
    where = f"{path}: task {shown(str(name))}"
    kind = raw.get("kind")
    if kind not in TASK_KIND_NAMES:
        raise UserError(f"{where}: kind must be one of {', '.join(TASK_KIND_NAMES)}, got {shown(kind)}")
    allowed = {f.name for f in dataclasses.fields(TaskSpec)}
    unknown = set(raw) - allowed
    if unknown:
        raise UserError(f"{where}: unknown keys {sorted(map(str, unknown))} (valid: {', '.join(sorted(allowed))})")
    fields = _fields(raw.get("fields"), kind, where)
    prompt = raw.get("prompt")
    if prompt is not None or kind != "classification":
        _check_prompt(prompt, fields, kind, where)
    sizes = _mapping(raw.get("sizes"), f"{where}: sizes")
    for split, size in sizes.items():
        if split not in ("train", "eval"):
            raise UserError(f"{where}: sizes keys are train and eval, got {shown(split)}")
        positive_int(size, f"{where}: sizes.{split}")
    max_length = positive_int(raw.get("max_length", 128), f"{where}: max_length")
    max_target_length = positive_int(raw.get("max_target_length", 32), f"{where}: max_target_length")
    if kind == "generation" and max_target_length >= max_length:
        raise UserError(f"{where}: max_target_length ({max_target_length}) must be below max_length ({max_length}), "
                        "which counts prompt and target together")
    return TaskSpec(name=str(name), kind=kind, data=_data(raw.get("data"), where, path), fields=fields,
                    model=_text(raw.get("model", default_model), f"{where}: model"), sizes=sizes,
                    max_length=max_length, max_target_length=max_target_length, prompt=prompt,
                    labels=_labels(raw.get("labels"), where), metrics=_metrics(raw.get("metrics"), kind, where),
                    train=_mapping(raw.get("train"), f"{where}: train"),
                    description=str(raw.get("description") or ""))


def _fields(value: Any, kind: str, where: str) -> dict[str, str]:
    roles = KIND_FIELDS[kind]
    if value is None:
        return {r: r for r in roles}
    fields = _mapping(value, f"{where}: fields")
    if not all(isinstance(v, str) and v for v in fields.values()):
        raise UserError(f"{where}: fields must map each role to a column name, got {shown(value)}")
    missing = [r for r in roles if r not in fields]
    if missing:
        raise UserError(f"{where}: fields must map {', '.join(roles)}; missing {missing}")
    return fields


def _check_prompt(prompt: Any, fields: dict[str, str], kind: str, where: str) -> None:
    import string

    if not isinstance(prompt, str) or not prompt.strip():
        raise UserError(f"{where}: {kind} tasks need a 'prompt' template (a string with {{placeholders}})")
    try:
        names = {field.split(".")[0].split("[")[0] for _, field, _, _ in string.Formatter().parse(prompt)
                 if field is not None}
    except ValueError as exc:
        raise UserError(f"{where}: prompt template is malformed ({exc}); write literal braces as {{{{ }}}}") from None
    unknown = sorted(names - set(fields))
    if unknown:
        raise UserError(f"{where}: prompt placeholders {unknown} are not fields (valid: {', '.join(fields)})")


def _data(value: Any, where: str, path: Path) -> dict[str, Any]:
    data = _mapping(value, f"{where}: data")
    source = data.get("source")
    if source not in ("shipped", "local", "hub"):
        raise UserError(f"{where}: data.source must be shipped, local or hub, got {shown(source)}")
    if source == "shipped":
        _text(data.get("path"), f"{where}: data.path (a folder under the shipped data)")
    elif source == "local":
        files = data.get("files")
        if not isinstance(files, dict) or set(files) != {"train", "eval"} \
                or not all(isinstance(f, str) and f for f in files.values()):
            raise UserError(f"{where}: data.files must map train and eval to file paths, got {shown(files)}")
        # Relative to the YAML file, not to wherever the command runs: a suite folder can be moved whole.
        data = {**data, "files": {split: str((path.parent / f).expanduser()) for split, f in files.items()}}
    else:
        _text(data.get("id"), f"{where}: data.id (a hub dataset id or a local copy)")
        for key in ("config", "revision"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise UserError(f"{where}: data.{key} must be a string, got {shown(data[key])}")
        splits = _mapping(data.get("splits"), f"{where}: data.splits")
        if splits and (set(splits) != {"train", "eval"} or not all(isinstance(v, str) for v in splits.values())):
            raise UserError(f"{where}: data.splits must map train and eval to hub split names, got {shown(splits)}")
        if exists(path.parent / data["id"]):
            data = {**data, "id": str((path.parent / data["id"]).resolve())}  # a local copy beside the YAML
    return data


def _labels(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, (str, int)) for v in value):
        raise UserError(f"{where}: labels must be a non-empty list of label names, got {shown(value)}")
    labels = tuple(str(v) for v in value)
    if len(set(labels)) != len(labels):
        raise UserError(f"{where}: labels repeat a name: {list(labels)}")
    return labels


def _metrics(value: Any, kind: str, where: str) -> tuple[str, ...]:
    if value is None:
        return tuple(DEFAULT_METRICS[kind])
    valid = DEFAULT_METRICS[kind]
    if not isinstance(value, list) or not value or not all(isinstance(m, str) and m in valid for m in value):
        raise UserError(f"{where}: metrics must be a list drawn from {', '.join(valid)}, got {shown(value)}")
    return tuple(value)
