"""Sections that need other peftbench parts: the hardware-profile matrix (estimator) and the recommender's pick.

Both are optional: a report must still be written when the estimator or the recommender is missing,
fails or runs out of time, so each of those becomes a note on the page. Stored answers come from
`DerivedCache`; missing ones are computed in a child process (`python -m peftbench.report.worker`), with a
progress bar and an ETA (one cold recommender call alone can take 40 s on this CPU). There is no time limit
unless the user sets one (`--estimate-budget`); the child is then killed when it runs out, and the page
says what was left out and why.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftbench.report import fmt
from peftbench.report.cache import Deadline, DerivedCache

if TYPE_CHECKING:
    import pandas as pd

RECOMMEND_GPU = "16GB"  # the pick shown in the summary: the most common fine-tuning card class
# What a stored recommender answer holds (`worker.recommend_answer`); part of its key, so answers stored in an
# older shape are recomputed rather than shown without the fields the verdict reads.
RECOMMEND_ANSWER_FORMAT = 4


@dataclass
class RunShape:
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
    rows: list[dict[str, Any]] = field(default_factory=list)  # task, method, shape, peak, cells per profile
    note: str = ""


@dataclass
class Derived:
    matrix: HardwareMatrix
    picks: list[dict[str, Any]]
    picks_note: str
    problems: dict[str, str] = field(default_factory=dict)  # task -> why it has no pick


def suite_shapes(table: pd.DataFrame, suite_tasks: dict[str, Any]) -> list[RunShape]:
    """The (model, batch, length, dtype) each task trained at, with the methods that ran on it."""
    shapes = []
    for task, rows in table.groupby("task", sort=True):
        first = rows.iloc[0]
        batch = first.get("train_config.batch_size")
        shapes.append(RunShape(task=str(task), kind=str(first.get("task_kind")), model=str(first.get("model")),
                            batch_size=8 if fmt.missing(batch) else int(batch),
                            seq_len=int(getattr(suite_tasks.get(task), "max_length", 128)),
                            dtype=str(first.get("train_config.dtype") or "fp32"),
                            methods=sorted(str(m) for m in rows["method"].unique())))
    return shapes


def derive(suite: str, shapes: list[RunShape], root: Path, cache: DerivedCache, deadline: Deadline,
           progress: bool = False) -> Derived:
    """The hardware matrix and the recommender's picks, from stored answers and whatever the budget allows."""
    try:
        from peftbench.hardware import gpu_profiles
    except ImportError as exc:
        note = f"estimator not available ({exc}); the hardware matrix is omitted."
        return Derived(HardwareMatrix(note=note), [], "recommender not available: it needs the estimator.")
    profiles = list(gpu_profiles())
    results_hash = _results_hash(root)
    plan = []  # (key, job) in page order; tasks may share a key (same model and shape), so not a dict
    for shape in shapes:
        for method in shape.methods:
            plan.append((cache.key("estimate", shape.model, method, shape.kind, shape.batch_size, shape.seq_len,
                                   shape.dtype, profiles),
                         {"kind": "estimate", "shape": shape.__dict__, "method": method, "profiles": profiles}))
        plan.append((cache.key("recommend", RECOMMEND_ANSWER_FORMAT, suite, shape.task, shape.model, RECOMMEND_GPU,
                               results_hash),
                     {"kind": "recommend", "task": f"{suite}/{shape.task}", "model": shape.model,
                      "root": str(root), "gpu": RECOMMEND_GPU}))
    missing = {key: job for key, job in plan if cache.get(key) is None}
    problem = _compute(missing, cache, deadline, f"{suite}: estimates and picks", progress) if missing else ""
    answers = iter(cache.get(key) for key, _ in plan)
    matrix, picks, problems, late = HardwareMatrix(profiles=profiles), [], {}, 0
    for shape in shapes:
        for method in shape.methods:
            answer = next(answers)
            late += answer is None
            if answer is not None:
                matrix.rows.append(_matrix_row(shape, method, answer))
        pick = next(answers)
        if pick is None:
            problems[shape.task] = f"left out ({problem or 'not computed'})"
        elif pick.get("error"):
            problems[shape.task] = pick["error"]
        else:
            picks.append({"task": shape.task, **pick})
    if late:
        matrix.note = (f"{late} task × method estimates left out ({problem or 'not computed'}). "
                       "`peftbench report … --estimate-budget 0` computes them all (then stored).")
    notes = "; ".join(f"{task}: {why}" for task, why in problems.items())
    return Derived(matrix, picks, f"recommender: {notes}" if notes else "", problems)


def _exchange(proc: subprocess.Popen[str], jobs: dict[str, dict[str, Any]], cache: DerivedCache, bar: Any) -> None:
    """Send the worker its jobs and store each answer as it arrives, until it exits (or is killed)."""
    assert proc.stdin is not None and proc.stdout is not None  # opened with stdin=PIPE, stdout=PIPE
    proc.stdin.write(json.dumps(jobs))
    proc.stdin.close()
    for line in proc.stdout:
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the kill
        if isinstance(item, dict) and item.get("key") in jobs:
            cache.put(item["key"], item["answer"])
            bar.update(1)
    proc.wait()


def _compute(jobs: dict[str, dict[str, Any]], cache: DerivedCache, deadline: Deadline, label: str = "answers",
             progress: bool = False) -> str:
    """Run jobs in a child process, storing each answer as it arrives; say why any are missing."""
    import threading

    from tqdm import tqdm

    remaining = deadline.remaining()
    if remaining is not None and remaining <= 0:
        return f"the time budget of {deadline.seconds:.0f} s ran out"
    # Its own process group: the worker's recommender traces in a pool of spawned processes, which inherit its
    # stdout; killing the worker alone left them holding that pipe open, and reading it never ended (a report
    # whose budget ran out mid-trace hung). The whole group goes.
    proc = subprocess.Popen([sys.executable, "-m", "peftbench.report.worker"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    timed_out = threading.Event()

    def kill_group() -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def kill() -> None:
        timed_out.set()
        kill_group()

    timer = threading.Timer(remaining, kill) if remaining is not None else None
    # stderr is drained by a thread: a chatty child must not block on a full pipe while we read stdout.
    err_lines: list[str] = []
    stderr = proc.stderr
    assert stderr is not None  # opened with stderr=PIPE
    drain = threading.Thread(target=lambda: err_lines.extend(stderr), daemon=True)
    bar = tqdm(total=len(jobs), desc=label, unit="answer", disable=not progress, file=sys.stderr)
    try:
        if timer:
            timer.start()
        drain.start()
        _exchange(proc, jobs, cache, bar)
    except BaseException:
        kill_group()
        raise
    finally:
        if timer:
            timer.cancel()
        bar.close()
        drain.join(timeout=5)
    if timed_out.is_set():
        return f"the time budget of {deadline.seconds:.0f} s ran out"
    if proc.returncode != 0:
        return f"worker failed: {([x.strip() for x in err_lines if x.strip()] or ['?'])[-1]}"
    return ""


def _matrix_row(shape: RunShape, method: str, answer: dict[str, Any]) -> dict[str, Any]:
    fits = answer.get("fits") or {}
    return {"task": shape.task, "method": method, "model": shape.model,
            "shape": f"batch {shape.batch_size} × {shape.seq_len} tokens, {shape.dtype}",
            "peak": fmt.human_bytes(answer.get("peak_bytes")), "error": answer.get("error", ""),
            "cells": {name: {"fits": ok, "text": {True: "fits", False: "too big"}.get(ok, "?")}
                      for name, ok in fits.items()}}


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


def _results_hash(root: Path) -> str:
    """The recommender learns from every suite under the root, so any change there changes its answer."""
    digest = hashlib.sha256()
    for path in sorted(Path(root).glob("*/runs.jsonl")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
