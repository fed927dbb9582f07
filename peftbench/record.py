"""A run record: what one finished (or failed, or skipped) run measured, typed and versioned.

Records are stored as one JSON object per line (peftbench.results.ResultStore). This module is the only one
that knows that JSON's shape: `RunRecord.from_dict` reads a line's object (checking it, migrating an older
shape), `RunRecord.to_dict` gives the object to store. Everything else reads attributes.

Versions (`schema_version`):
  1  no `schema_version` key: every record written before the field existed. Three shapes of it exist on
     disk: the first (no `machine_id`), then with `machine_id` but without `config_id`, `role`, `tune`,
     `trust_remote_code` and the batch fields (`micro_batch_size`, `gradient_accumulation_steps`,
     `effective_batch_size`, `adapter_saved`), then today's (all of those, no `world_size` before
     multi-process runs). Samples of each: tests/data/records/.
  2  the same fields, stamped with `schema_version`.
A record of a version newer than this module knows is read as far as it goes (its unknown fields are kept in
`extra`), with one warning: as scikit-learn warns on a pickle from another version instead of refusing it.

Migration fills the typed attributes an older record lacks from what it has (a record without `config_id`
gets the one its fields give; without `gradient_accumulation_steps`, 1), but `to_dict` still gives the fields
the record was stored with and no others: tables built from records read exactly as before, and a rewrite
of the runs file (`ResultStore.replace`) keeps other runs' lines byte for byte anyway.

A frozen dataclass, not a pydantic model: the recommender reads every record on each call and the reader
must stay cheap to import, and the checks a record must pass carry their own messages (said once per file).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from peftbench import identity

SCHEMA_VERSION = 2
_UNVERSIONED = 1  # what a record without `schema_version` is


@dataclass(frozen=True)
class RunRecord:
    """One run's record. Fields are None where the run did not get that far (a failed run has no metrics)."""

    run_id: str
    suite: str
    task: str
    method: str
    status: str  # ok | failed | oom | timeout | skipped | ...
    schema_version: int = SCHEMA_VERSION
    # What ran
    model: str | None = None
    seed: int | None = None
    task_kind: str | None = None
    scale: str | None = None
    data_fingerprint: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    trust_remote_code: bool = False
    config_id: str = ""
    role: str | None = None  # None: a plain run; "sweep" or "selected" (peftbench.runs.tuning)
    tune: dict[str, Any] | None = None
    selected_from: list[str] | None = None
    family: str | None = None
    architecture: str | None = None
    model_type: str | None = None
    model_source: str | None = None
    world_size: int = 1
    strategy: str | None = None
    offload: str | None = None
    # Where and when
    machine_id: str | None = None
    recorded_by: str | None = None  # the driver that recorded a run it handed to a Ray cluster
    finished_at: str | None = None
    device: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    ray: dict[str, Any] | None = None
    artifacts: dict[str, Any] | None = None
    # How it ended
    error: str | None = None
    traceback: str | None = None
    applicability: Any = None
    failed_rank: int | None = None
    rank_exit_codes: dict[str, Any] | None = None
    # What it measured
    metrics: dict[str, Any] = field(default_factory=dict)
    eval_rows: dict[str, Any] | None = None  # per-row scores of the primary metric
    eval_baselines: dict[str, Any] | None = None
    memory: dict[str, Any] = field(default_factory=dict)
    ranks: list[dict[str, Any]] | None = None  # each rank's memory and timings, in a multi-process run
    prediction: dict[str, Any] | None = None
    inference: dict[str, Any] | None = None
    forgetting: dict[str, Any] | None = None
    train_loss_curve: list[Any] | None = None
    # Counts and sizes (the reader checks they are numbers from 0 to LARGEST_COUNT)
    adapter_bytes: int | None = None
    adapter_path: str | None = None
    adapter_saved: bool | None = None
    total_params: int | None = None
    trainable_params: int | None = None
    train_examples: int | None = None
    eval_examples: int | None = None
    steps: int | None = None
    train_tokens: int | None = None
    micro_batch_size: int | None = None
    gradient_accumulation_steps: int = 1
    effective_batch_size: int | None = None
    gradient_checkpointing: bool = False
    # Measurements
    trainable_percent: float | None = None
    mean_input_tokens: float | None = None
    mean_target_tokens: float | None = None
    final_train_loss: float | None = None
    train_seconds: float | None = None
    eval_seconds: float | None = None
    wall_seconds: float | None = None
    seconds_per_step: float | None = None
    tokens_per_second: float | None = None
    # Fields this version does not know (a newer record's), kept so that nothing is lost on a round trip
    extra: dict[str, Any] = field(default_factory=dict)
    # Typed fields the stored record did not hold (migration filled them): `to_dict` leaves them out
    absent: frozenset[str] = frozenset()

    # --- reading and writing ---------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> RunRecord:
        """The record a stored object holds, an older shape migrated. The object must have passed `problem`
        (ResultStore checks it first); a record from a newer version is read with one warning."""
        version = stored.get("schema_version", _UNVERSIONED)
        if version > SCHEMA_VERSION:
            _warn_newer(version)
        known = {k: v for k, v in stored.items() if k in _FIELDS}
        extra = {k: v for k, v in stored.items() if k not in _FIELDS}
        filled = _migrated(stored) if version < SCHEMA_VERSION else {}
        absent = frozenset(name for name in _FIELDS if name not in stored)
        return cls(**{**filled, **known, "schema_version": version}, extra=extra, absent=absent)

    @classmethod
    def new(cls, fields: Mapping[str, Any]) -> RunRecord:
        """The record of a run that just finished, from the fields its worker gathered: stamped with the
        current schema version. Not checked here: the reader checks every line it reads."""
        return cls.from_dict({**fields, "schema_version": SCHEMA_VERSION})

    @classmethod
    def from_json(cls, line: str | bytes) -> RunRecord:
        """The record of one runs-file line; ValueError (saying why) when the line is not a usable record."""
        record, why = parse(line)
        if record is None:
            raise ValueError(why[1] if why else "not a record")
        return record

    def to_dict(self) -> dict[str, Any]:
        """The object stored for this record: the fields it was read with (or all, for a new record)."""
        out = {name: getattr(self, name) for name in _FIELDS if name not in self.absent}
        return {**out, **self.extra}

    def to_json(self) -> str:
        """One runs-file line (without its newline)."""
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    def replaced(self, **changes: Any) -> RunRecord:
        """A copy with fields changed; a changed field is then stored even where the original lacked it."""
        return dataclasses.replace(self, **changes, absent=self.absent - set(changes))

    # --- what readers ask -------------------------------------------------------------------------------

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def is_sweep(self) -> bool:
        """A learning-rate sweep run: scored on a validation split, not the eval split."""
        return self.role == "sweep"

    @property
    def learning_rate(self) -> float | None:
        rate = self.train_config.get("learning_rate")
        return float(rate) if rate is not None else None

    def metric(self, name: str | None) -> float | None:
        """The value of metric `name` (None when the run did not measure it, or no name)."""
        value = self.metrics.get(name) if name else None
        return float(value) if value is not None else None

    def primary_metric(self, preferred: tuple[str, ...] = ()) -> str | None:
        """The first of `preferred` the run measured, else its first metric."""
        for name in preferred:
            if name in self.metrics:
                return name
        return next(iter(self.metrics), None)

    @property
    def primary_score(self) -> float | None:
        """The run's first metric (the task's primary one: tasks list it first)."""
        return self.metric(self.primary_metric())

    @property
    def peak_memory_bytes(self) -> int | None:
        """The run's measured peak: what the CUDA allocator reserved on a GPU, else the training RSS peak."""
        peak = self.memory.get("cuda_max_reserved_bytes") or self.memory.get("peak_rss_train_bytes")
        return int(peak) if peak else None

    def recorded_on(self, machine: str) -> bool:
        """Measured on `machine`, or recorded by it from a run it handed to a Ray cluster (`recorded_by`)."""
        return machine in (self.machine_id, self.recorded_by)


_FIELDS = tuple(f.name for f in dataclasses.fields(RunRecord) if f.name not in ("extra", "absent"))
_warned_newer: set[int] = set()


def _warn_newer(version: int) -> None:
    if version not in _warned_newer:
        _warned_newer.add(version)
        sys.stderr.write(f"peftbench: warning: run records of schema version {version} (this peftbench reads "
                         f"{SCHEMA_VERSION}): fields it does not know are kept but not used; upgrade peftbench\n")


def _migrated(stored: Mapping[str, Any]) -> dict[str, Any]:
    """What a version-1 record's typed attributes are where its shape lacks them (see the module doc)."""
    train = stored.get("train_config") or {}
    accumulation = train.get("gradient_accumulation_steps", 1)
    filled: dict[str, Any] = {
        "config_id": identity.config_id(
            suite=stored["suite"], task=stored["task"], model=stored.get("model"), method=stored["method"],
            hyperparameters=stored.get("hyperparameters"), scale=stored.get("scale"),
            data_fingerprint=stored.get("data_fingerprint"), train_config=train, role=stored.get("role")),
        "world_size": train.get("world_size", 1),
        "gradient_accumulation_steps": accumulation,
        "gradient_checkpointing": bool(train.get("gradient_checkpointing", False)),
    }
    if stored["status"] == "ok":  # the batch fields describe a run that trained
        batch = train.get("batch_size")
        filled["micro_batch_size"] = batch
        filled["effective_batch_size"] = batch * accumulation * filled["world_size"] if batch else None
        filled["adapter_saved"] = stored.get("adapter_path") is not None
    return filled


# --- checks: which stored objects are records ----------------------------------------------------------

# What every reader relies on (a method, a task, grouping by run id): an object without these is not a run
# record. Nested fields, where present, must have the type readers index them as.
_REQUIRED = ("run_id", "status", "suite", "task", "method")
_NESTED: dict[str, type] = {"hyperparameters": dict, "train_config": dict, "metrics": dict, "memory": dict,
                            "device": dict, "versions": dict, "prediction": dict, "train_loss_curve": list}
# The two ways a line is skipped, reported apart: the first is not a run at all, the second is one whose
# fields cannot be read as what they are.
NOT_A_RECORD, WRONG_TYPES = "not a record", "wrong field types"


def parse(line: str | bytes) -> tuple[RunRecord | None, tuple[str, str] | None]:
    """(the record of one runs-file line, None), or (None, (which kind of skip, why))."""
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None, (NOT_A_RECORD, "not JSON")
    why = problem(value)
    return (None, why) if why else (RunRecord.from_dict(value), None)


def problem(value: Any) -> tuple[str, str] | None:
    """(which kind of skip, why) for a parsed line that is not a usable run record, or None."""
    why = not_a_record(value)
    if why:
        return NOT_A_RECORD, why
    why = wrong_field_types(value)
    return (WRONG_TYPES, why) if why else None


def not_a_record(value: Any) -> str | None:
    """Why a parsed JSON line is not a run record, or None when it is one."""
    if not isinstance(value, dict):
        return f"a JSON {type(value).__name__ if value is not None else 'null'}, not an object"
    missing = [k for k in _REQUIRED if not isinstance(value.get(k), str) or not value[k]]
    if missing:
        return f"no {', '.join(missing)}"
    for name in ("seed", "schema_version"):
        if name in value and (not isinstance(value[name], int) or isinstance(value[name], bool)):
            return f"{name} is not an integer"
    wrong = [k for k, kind in _NESTED.items() if value.get(k) is not None and not isinstance(value[k], kind)]
    return f"{', '.join(wrong)} of the wrong type" if wrong else None


# Fields that readers compute with (tables average them, the recommender fits them, reports plot them): text
# there fails deep inside pandas or numpy, far from the file, so a record carrying it is skipped at reading.
# Counts and sizes are also bounded; measurements are not (a diverged run's perplexity ratio passes 1e19, and
# its loss may be NaN).
_COUNT_FIELDS = ("adapter_bytes", "eval_examples", "steps", "total_params", "train_examples", "train_tokens",
                 "trainable_params", "effective_batch_size", "gradient_accumulation_steps", "micro_batch_size",
                 "world_size", "prediction.peak_bytes", "prediction.total_params", "prediction.trainable_params",
                 "train_config.max_steps", "train_config.batch_size")
_MEASURE_FIELDS = ("eval_seconds", "final_train_loss", "mean_input_tokens", "mean_target_tokens", "seconds_per_step",
                   "tokens_per_second", "train_seconds", "trainable_percent", "wall_seconds",
                   "prediction.step_seconds", "prediction.flops_per_step", "train_config.learning_rate",
                   "hyperparameters.learning_rate", "inference.overhead_unmerged", "inference.overhead_merged",
                   "inference.overhead_served", "forgetting.delta_nats", "forgetting.perplexity_ratio")
_TEXT_FIELDS = ("role", "model", "scale", "family", "task_kind", "architecture", "model_type", "model_source",
                "data_fingerprint", "machine_id", "recorded_by", "error", "finished_at", "adapter_path", "config_id",
                "strategy", "offload")
_DICT_FIELDS = ("tune", "ray", "artifacts", "eval_rows", "eval_baselines", "inference", "forgetting")
# No count or size of a run comes near this; past it, the int64 columns tables keep them in overflow.
LARGEST_COUNT = 1e18


def wrong_field_types(record: dict[str, Any]) -> str | None:
    """What in a run record has a type readers cannot use (text where a number belongs, a count or size that is
    negative, NaN or past `LARGEST_COUNT`, a list where text belongs), or None. Absent fields and nulls are fine."""
    counts = [(name, _field(record, name)) for name in _COUNT_FIELDS]
    counts += [(f"memory.{k}", v) for k, v in (record.get("memory") or {}).items() if not isinstance(v, bool)]
    measures = [(name, _field(record, name)) for name in _MEASURE_FIELDS]
    measures += [(f"metrics.{k}", v) for k, v in (record.get("metrics") or {}).items()]
    for name, value in counts + measures:
        if value is not None and not (isinstance(value, int | float) and not isinstance(value, bool)):
            return f"{name} is {_shown_value(value)}, not a number"
    for name, value in counts:
        if value is not None and not 0 <= value <= LARGEST_COUNT:  # NaN too: tables make counts integers
            return f"{name} is {value:g}, not a count or size (0 to {LARGEST_COUNT:g})"
    for name in _TEXT_FIELDS:
        if record.get(name) is not None and not isinstance(record[name], str):
            return f"{name} is a JSON {type(record[name]).__name__}, not text"
    for name in _DICT_FIELDS:
        if record.get(name) is not None and not isinstance(record[name], dict):
            return f"{name} is a JSON {type(record[name]).__name__}, not an object"
    return None


def _field(record: dict[str, Any], dotted: str) -> Any:
    group, _, key = dotted.partition(".")
    value = record.get(group)
    if not key:
        return value
    return value.get(key) if isinstance(value, dict) else None


def _shown_value(value: Any) -> str:
    from peftbench.errors import shown

    return shown(value, 30) if isinstance(value, str | int | float) else f"a JSON {type(value).__name__}"

