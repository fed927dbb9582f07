"""Sections that need other peftbench parts: the hardware-profile matrix (estimator) and the recommender's pick.

Both are imported lazily and are optional: a report must still be written when the estimator or the
recommender is missing or fails, so every failure becomes a note on the page instead of an exception.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftbench.report import fmt

ESTIMATE_BUDGET_S = 12.0  # per suite; keeps `report all` inside its 30 s target even on a slow estimator


@dataclass
class Shape:
    task: str
    kind: str
    model: str
    batch_size: int
    seq_len: int
    dtype: str
    methods: list[str]


@dataclass
class HardwareMatrix:
    profiles: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)  # task, method, peak text, cells per profile
    note: str = ""


def suite_shapes(table, suite_tasks: dict[str, Any]) -> list[Shape]:
    """The (model, batch, length, dtype) each task trained at, with the methods that ran on it."""
    shapes = []
    for task, rows in table.groupby("task", sort=True):
        spec = suite_tasks.get(task)
        first = rows.iloc[0]
        batch = first.get("train_config.batch_size")
        shapes.append(Shape(task=str(task), kind=str(first.get("task_kind")), model=str(first.get("model")),
                            batch_size=int(batch) if not fmt.missing(batch) else 8,
                            seq_len=int(getattr(spec, "max_length", 128)),
                            dtype=str(first.get("train_config.dtype") or "fp32"),
                            methods=sorted(str(m) for m in rows["method"].unique())))
    return shapes


def _profile_names(hardware) -> list[str]:
    """Profile names from the catalogue, whatever container it exposes."""
    for attr in ("PROFILES", "CATALOGUE", "profiles", "catalogue", "list_profiles"):
        value = getattr(hardware, attr, None)
        if callable(value):
            value = value()
        if isinstance(value, dict):
            return [str(k) for k in value]
        if isinstance(value, (list, tuple)):
            return [str(getattr(v, "name", v)) for v in value]
    return []


def hardware_matrix(shapes: list[Shape], budget_s: float = ESTIMATE_BUDGET_S) -> HardwareMatrix:
    """Which methods fit on which profile at each task's shape, from the estimator."""
    try:
        from peftbench import hardware
        from peftbench.estimate import estimate
    except ImportError as exc:
        return HardwareMatrix(note=f"estimator not available ({exc}); the hardware matrix is omitted.")
    profiles = [p for p in _profile_names(hardware) if p.lower() != "cpu"]
    matrix = HardwareMatrix(profiles=profiles)
    started = time.perf_counter()
    skipped = 0
    for shape in shapes:
        for method in shape.methods:
            if time.perf_counter() - started > budget_s:
                skipped += 1
                continue
            matrix.rows.append(_matrix_row(estimate, shape, method, profiles))
    if skipped:
        matrix.note = f"{skipped} task × method estimates left out: the estimator exceeded {budget_s:.0f} s."
    return matrix


def _matrix_row(estimate, shape: Shape, method: str, profiles: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"task": shape.task, "method": method, "model": shape.model,
                           "shape": f"batch {shape.batch_size} × {shape.seq_len} tokens, {shape.dtype}",
                           "peak": "—", "cells": {}, "error": ""}
    try:
        result = estimate(shape.model, method, task_kind=shape.kind, batch_size=shape.batch_size,
                          seq_len=shape.seq_len, dtype=shape.dtype, hardware=profiles)
        data = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    except Exception as exc:  # not applicable, unknown model, estimator bug: a note in the cell, not a crash
        row["error"] = f"{type(exc).__name__}: {exc}"
        return row
    row["peak"] = fmt.human_bytes(data.get("peak_bytes"))
    for name, profile in (data.get("profiles") or {}).items():
        fits = profile.get("fits") if isinstance(profile, dict) else None
        row["cells"][str(name)] = {"fits": fits, "text": {True: "fits", False: "too big"}.get(fits, "?"),
                                   "peak": fmt.human_bytes((profile or {}).get("peak_bytes"))}
    return row


def best_per_profile(matrix: HardwareMatrix, summaries: dict[str, dict[str, dict[str, float]]]) -> list[dict]:
    """For each task, the best-quality measured method among those the estimator says fit on each profile."""
    rows = []
    for task, summary in summaries.items():
        picks = {}
        for profile in matrix.profiles:
            fitting = [r["method"] for r in matrix.rows
                       if r["task"] == task and r["cells"].get(profile, {}).get("fits") is True]
            ranked = sorted((m for m in fitting if m in summary), key=lambda m: -summary[m]["quality"])
            picks[profile] = ranked[0] if ranked else "—"
        rows.append({"task": task, "picks": picks})
    return rows


def recommender_picks(suite: str, tasks: list[str], paths: list[Path]) -> tuple[list[dict[str, Any]], str]:
    """The recommender's top pick per task with its reasons, or a note saying why there is none."""
    try:
        from peftbench.recommend import recommend_for_task
    except ImportError as exc:
        return [], f"recommender not available ({exc}); its pick is omitted."
    picks, failures = [], []
    for task in tasks:
        try:
            answer = recommend_for_task(f"{suite}/{task}", results=paths)
            data = answer.to_dict() if hasattr(answer, "to_dict") else dict(answer)
            top = (data.get("ranking") or [{}])[0]
        except Exception as exc:  # the recommender must not take the report down with it
            failures.append(f"{task}: {type(exc).__name__}: {exc}")
            continue
        quality = top.get("predicted_relative_quality")
        picks.append({"task": task, "method": top.get("method", "—"),
                      "hyperparameters": top.get("hyperparameters") or {},
                      "quality": "—" if fmt.missing(quality) else f"{quality:.1f}% of full FT",
                      "reasons": [str(r) for r in top.get("reasons") or []]})
    note = ("recommender failed for " + "; ".join(failures)) if failures else ""
    return picks, note
