"""Per-run sections: the estimator's prediction against the measurement, failures and skips, provenance."""

from __future__ import annotations

import json
import statistics
from typing import TYPE_CHECKING, Any

from peftbench.report import fmt

if TYPE_CHECKING:
    from peftbench.record import RunRecord


def measured_for_prediction(record: RunRecord) -> tuple[float | None, str]:
    """The measurement a run's recorded prediction should be compared with, and what it is.

    On CPU the estimator predicts how much process RSS grows from just before the model is loaded (libraries
    already imported) to the training peak; the runtime's own RSS is no config's business. Records that
    carry `rss_before_load_bytes` give exactly that baseline; older ones only have the RSS just before
    training (model already loaded), which leaves the weights out of the measured growth, so the column
    says which baseline was used. On CUDA: NVML's used memory where sampled, else the allocator's peaks.
    """
    memory = record.memory
    prediction = record.prediction or {}
    key = prediction.get("measured_key")  # lets the estimator name the measurement it predicts
    if isinstance(key, str) and key in memory:
        return memory[key], key
    if record.device.get("type", "cpu") == "cpu":
        peak = memory.get("peak_rss_train_bytes")
        for base in ("rss_before_load_bytes", "rss_before_train_bytes"):
            if peak is not None and memory.get(base) is not None:
                return peak - memory[base], f"RSS growth from {base.removeprefix('rss_').removesuffix('_bytes')}"
        return None, "RSS growth"
    for key in ("nvml_peak_used_bytes", "cuda_max_reserved_bytes", "cuda_max_allocated_bytes"):
        if memory.get(key):
            return memory[key], key
    return None, "GPU peak"


def prediction_rows(records: list[RunRecord]) -> list[dict[str, Any]]:
    """One row per run that trained: predicted and measured peak, and the relative error."""
    rows = []
    for record in records:
        if not record.ok:
            continue
        measured, what = measured_for_prediction(record)
        prediction = record.prediction
        predicted = prediction.get("peak_bytes") if isinstance(prediction, dict) else None
        note = ""
        if prediction is None:
            note = "no prediction recorded (estimator not available when this run ran)"
        elif isinstance(prediction, dict) and prediction.get("error"):
            note = f"estimator failed: {prediction['error']}"
        error = None
        if isinstance(predicted, (int, float)) and measured:
            error = 100.0 * (predicted - measured) / measured
        step = prediction.get("step_seconds") if isinstance(prediction, dict) else None
        rows.append({"run_id": record.run_id, "task": record.task, "method": record.method,
                     "seed": record.seed, "predicted": predicted, "measured": measured, "what": what,
                     "step_predicted": step, "step_measured": record.seconds_per_step,
                     "predicted_text": fmt.human_bytes(predicted), "measured_text": fmt.human_bytes(measured),
                     "error": error, "error_text": "—" if error is None else f"{error:+.1f}%", "note": note})
    return rows


def prediction_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    errors = sorted(abs(r["error"]) for r in rows if r["error"] is not None)
    if not errors:
        return {"count": 0, "runs": len(rows)}
    return {"count": len(errors), "runs": len(rows), "median_abs": statistics.median(errors), "max_abs": errors[-1]}


def failure_rows(records: list[RunRecord]) -> list[dict[str, Any]]:
    """Failed, out-of-memory, timed-out and skipped runs with their reasons."""
    rows = []
    for record in records:
        if record.ok:
            continue
        error = record.error or "no reason recorded"
        rows.append({"task": record.task, "method": record.method, "seed": record.seed,
                     "status": record.status, "reason": error.splitlines()[0][:300], "detail": error,
                     "traceback": record.traceback or "", "run_id": record.run_id})
    return sorted(rows, key=lambda r: (str(r["task"]), str(r["method"]), str(r["seed"])))


def provenance(records: list[RunRecord]) -> dict[str, Any]:
    """Where and with what the numbers were produced: machines, versions, seeds, data, every run id."""
    machines = _distinct(_machine(r.device) for r in records)
    versions = _distinct(json.dumps(r.versions, sort_keys=True) for r in records)
    tasks: dict[str, dict[str, Any]] = {}
    for record in records:
        entry = tasks.setdefault(record.task, {"seeds": set(), "fingerprints": set(), "models": set(),
                                               "train": set()})
        entry["seeds"].add(record.seed)
        entry["fingerprints"].add(str(record.data_fingerprint))
        entry["models"].add(str(record.model))
        train = {k: v for k, v in record.train_config.items() if k != "learning_rate"}
        entry["train"].add(json.dumps(train, sort_keys=True))  # the rate is per method: see hyper-parameters
    runs = [{"run_id": r.run_id, "task": r.task, "method": r.method, "seed": r.seed, "status": r.status,
             "hyperparameters": json.dumps(r.hyperparameters, sort_keys=True, default=str),
             "finished_at": r.finished_at} for r in records]
    return {"machines": machines,
            "versions": [json.loads(v) for v in versions],
            "tasks": {name: {k: sorted(v, key=str) for k, v in entry.items()} for name, entry in sorted(tasks.items())},
            "runs": sorted(runs, key=lambda r: (str(r["task"]), str(r["method"]), str(r["seed"]))),
            "cpu_only": all(r.device.get("type", "cpu") == "cpu" for r in records)}


def _machine(device: dict[str, Any]) -> str:
    parts = [str(device.get("type", "?")), str(device.get("name", "?"))]
    if device.get("memory_bytes"):
        parts.append(f"{fmt.human_bytes(device['memory_bytes'])} memory")
    if device.get("cores"):
        parts.append(f"{device['cores']} cores")
    if device.get("threads"):
        parts.append(f"{device['threads']} training thread(s)")
    return ", ".join(parts)


def _distinct(values) -> list[str]:
    seen: list[str] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen
