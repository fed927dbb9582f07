"""What `peftbench pilot` is asked, checked before anything is written: the user's data and its columns, the
task kind, the model, where it runs and the time budget. Every problem is one `UserError` line (exit 2)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftbench.errors import UserError, shown

# The user's word for the task -> the harness's task kind; summarization and translation are generation tasks
# the recommender's evidence tells apart (`--task` of `recommend`).
KINDS = {"classification": "classification", "generation": "generation", "summarization": "generation",
         "translation": "generation", "qa": "generation"}
ROLES = {"classification": ("text", "label"), "generation": ("source", "target")}
MIN_ROWS = 60  # a test split and a validation split of at least 16 rows each, and rows to train on
_BUDGET = re.compile(r"(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m(?:in)?)?\s*(?:(\d+(?:\.\d+)?)s)?")


@dataclass(frozen=True)
class PilotRequest:
    data: Path
    task: str  # as the user said it (summarization...): the recommender's query
    kind: str  # the harness's task kind
    columns: dict[str, str]  # role (text/label or source/target) -> the file's column
    model: str
    device: str  # where the pilot trains: cpu or cuda
    gpu: str | None  # the GPU the full run is for (--gpu 24GB), if not this machine's
    budget_seconds: float
    max_candidates: int | None
    results: Path
    export: str | None = None  # a tool the decision is written out for (`peftbench.export.TOOLS`)

    @property
    def name(self) -> str:
        """The pilot's suite name: its results folder, report page and run ids (`paths.check_name` rules)."""
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", self.data.stem).strip("_") or "data"
        return f"pilot_{stem}"[:64]


def parse_budget(text: str) -> float:
    """'15m', '2h', '1h30m', '90s' or a number of minutes -> seconds."""
    value = (text or "").strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value) * 60
    match = _BUDGET.fullmatch(value)
    if not value or not match or not any(match.groups()):
        raise UserError(f"--budget must be a duration like 15m, 2h, 1h30m or 90s, got {shown(text)}")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if not 0 < total <= 30 * 24 * 3600:
        raise UserError(f"--budget must be more than 0 and at most 30 days, got {shown(text)}")
    return total


def build_request(args: Any) -> PilotRequest:
    """The request from the CLI's arguments, every field checked; the data file is read to check its columns."""
    kind = KINDS.get((args.task or "").lower())
    if kind is None:
        raise UserError(f"--task {shown(args.task)}: pilot runs {', '.join(KINDS)} (multiple choice: use a suite)")
    columns = _columns(kind, args)
    if args.device not in (None, "cpu", "cuda"):
        raise UserError(f"--device must be cpu or cuda, got {shown(args.device)}")
    device = args.device or "cpu"
    if args.candidates is not None and not 2 <= args.candidates <= 8:
        raise UserError(f"--candidates must be from 2 to 8, got {args.candidates}")
    _check_runnable_model(args.model)
    return PilotRequest(Path(args.data).expanduser(), args.task.lower(), kind, columns, args.model, device, args.gpu,
                        parse_budget(args.budget), args.candidates, Path(args.results).expanduser(),
                        getattr(args, "export", None))


def _columns(kind: str, args: Any) -> dict[str, str]:
    given = ({"text": args.text_column, "label": args.label_column} if kind == "classification"
             else {"source": args.input_column, "target": args.target_column})
    wrong = ("--input-column/--target-column" if kind == "classification" else "--text-column/--label-column")
    if kind == "classification" and (args.input_column or args.target_column) or \
            kind == "generation" and (args.text_column or args.label_column):
        raise UserError(f"{wrong} do not apply to a {kind} task")
    return {role: column or role for role, column in given.items()}


def _check_runnable_model(model: str | None) -> None:
    """A pilot trains, so it needs weights: a packaged model, a local model folder, or a hub id (network)."""
    from peftbench.models.catalogue import CATALOGUE
    from peftbench.models.configs import preset_for
    from peftbench.paths import is_dir

    if not model:
        raise UserError("--model is required: the model you will fine-tune (peftbench models lists packaged ones)")
    if model in CATALOGUE or is_dir(model):
        return
    preset = preset_for(model)
    if preset is not None and "/" not in model:
        from peftbench.models.configs import preset_index

        hub = preset_index()[preset.name]["hub_id"]
        raise UserError(f"--model {model} is a preset (a config, no weights): pass its hub id {hub} (needs the "
                        "hub), a local model folder, or a packaged model (peftbench models)")
    if "/" not in model:
        raise UserError(f"--model {shown(model)}: not a packaged model, a local folder or a hub id org/name")


def check_data(request: PilotRequest) -> Any:
    """The data file as a Dataset, its columns present and usable: at least MIN_ROWS rows; a label column with
    two classes or more and no empty cell; no empty input or target."""
    from peftbench.data import load_data_file

    where = f"--data {request.data}"
    data = load_data_file(request.data, list(request.columns.values()), where)
    missing = [c for c in request.columns.values() if c not in data.column_names]
    if missing:
        flags = "--text-column/--label-column" if request.kind == "classification" else "--input-column/--target-column"
        raise UserError(f"{where}: no column {', '.join(map(repr, missing))} (has: {', '.join(data.column_names)}; "
                        f"name yours with {flags})")
    if len(data) < MIN_ROWS:
        raise UserError(f"{where}: {len(data)} rows; a pilot needs at least {MIN_ROWS} (test, validation and "
                        "training rows)")
    for role, column in request.columns.items():
        empty = sum(1 for v in data[column] if v is None or not str(v).strip())
        if empty:
            raise UserError(f"{where}: column {column!r} ({role}) has {empty} empty cell(s)")
    if request.kind == "classification":
        classes = {str(v) for v in data[request.columns["label"]]}
        if len(classes) < 2:
            raise UserError(f"{where}: label column {request.columns['label']!r} has one class ({shown(classes)}): "
                            "nothing to classify")
    return data
