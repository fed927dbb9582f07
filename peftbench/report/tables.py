"""Per-task comparison tables from the tidy results table: methods x metrics and costs, best values marked.

Everything here is plain data (dicts, lists, floats) for the template; no HTML is produced in Python, so
Jinja's autoescaping covers every string that came from a results file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from peftbench.report import fmt

# How each cost column is read from the flattened table, shown, and which direction is better.
COST_COLUMNS = (
    ("trainable_params", "Trainable params", fmt.human_count, "low"),
    ("peak_memory_bytes", "Peak memory", fmt.human_bytes, "low"),
    ("train_seconds", "Train time", fmt.human_seconds, "low"),
    ("tokens_per_second", "Tokens/s", lambda v: "—" if fmt.missing(v) else f"{v:.0f}", "high"),
    ("adapter_bytes", "Adapter size", fmt.human_bytes, "low"),
    # After training: served inference latency / the base model's (merged where the method
    # merges), and the change in general-text loss (nats/token; > 0: forgot). Blank where not measured.
    ("inference.overhead_served", "Inference ×", lambda v: "—" if fmt.missing(v) else f"{v:.2f}", "low"),
    ("forgetting.delta_nats", "Forgetting Δ", lambda v: "—" if fmt.missing(v) else f"{v:+.3f}", "low"),
)
FULL_METHOD = "full"

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Column:
    label: str
    better: str | None = None  # "high", "low" or None (not ranked)
    title: str = ""
    quality: bool = False  # a metric or its share of full FT: judged against the task's noise, unlike costs


@dataclass
class TaskTable:
    task: str
    kind: str
    model: str
    primary: str  # the metric that "quality" means for this task
    columns: list[Column]
    rows: list[dict[str, Any]]
    summary: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> mean quality and costs
    # Configurations shown but not compared: a method's plain runs at its default rate where the method was
    # also tuned on this task (`results.tuned_over_untuned`, the records every verdict and the recommender use).
    untuned_beside_tuned: set[str] = field(default_factory=set)
    methods: dict[str, str] = field(default_factory=dict)  # configuration label -> method name

    def compared(self) -> dict[str, dict[str, float]]:
        """The configurations a verdict ranks: every one but plain runs of a method that was also tuned."""
        return {c: v for c, v in self.summary.items() if c not in self.untuned_beside_tuned}

    def best_by_method(self) -> dict[str, dict[str, float]]:
        """Per method name, its best compared configuration's summary (for views keyed by method)."""
        best: dict[str, dict[str, float]] = {}
        for config, values in self.compared().items():
            method = self.methods.get(config, config)
            if method not in best or values["quality"] > best[method]["quality"]:
                best[method] = values
        return best

    def full_summary(self) -> dict[str, float] | None:
        """Full fine-tuning's compared configuration, the one "vs full FT" divides by; None unless exactly one."""
        fulls = [v for c, v in self.compared().items() if self.methods.get(c) == FULL_METHOD]
        return fulls[0] if len(fulls) == 1 else None


def peak_memory(table: pd.DataFrame) -> pd.Series:
    """One peak-memory column: CUDA allocator peak on GPU runs, process RSS during training on CPU runs."""
    import pandas as pd

    rss = table.get("memory.peak_rss_train_bytes", pd.Series(float("nan"), index=table.index))
    cuda = table.get("memory.cuda_max_allocated_bytes", pd.Series(float("nan"), index=table.index))
    return cuda.where(cuda.notna() & (cuda > 0), rss)


def metric_order(table: pd.DataFrame, task: str, declared: tuple[str, ...] = ()) -> list[str]:
    """The task's metrics: those the suite declares first (its first is the primary), then any others."""
    rows = table[table["task"] == task]
    present = [c.removeprefix("metrics.") for c in rows.columns
               if c.startswith("metrics.") and rows[c].notna().any()]
    return [m for m in declared if m in present] + sorted(m for m in present if m not in declared)


def task_table(table: pd.DataFrame, task: str, declared: tuple[str, ...] = ()) -> TaskTable | None:
    """Mean ± std over seeds of each method's metrics and costs for one task; None if no run succeeded."""
    rows_all = table[table["task"] == task]
    ok = rows_all[rows_all["status"] == "ok"].copy()
    metrics = metric_order(table, task, declared)
    if ok.empty or not metrics:
        return None
    ok["peak_memory_bytes"] = peak_memory(ok)
    primary = metrics[0]
    by = "config" if "config" in ok else "method"  # configurations of one method ("lora r=16") stay apart
    groups = {method: group for method, group in ok.groupby(by, sort=True)}
    columns = [Column("Method"), Column("Family"), Column("Seeds")]
    columns += [Column(m, "high", "mean ± std over seeds", quality=True) for m in metrics]
    columns.append(Column(f"{primary} vs full FT", "high", "primary metric as % of full fine-tuning's", quality=True))
    columns += [Column(label, better) for _, label, _, better in COST_COLUMNS]
    out = TaskTable(task, str(rows_all["task_kind"].iloc[0]), str(rows_all["model"].iloc[0]), primary, columns, [],
                    untuned_beside_tuned=_untuned_beside_tuned(ok, groups),
                    methods={config: str(group["method"].iloc[0]) for config, group in groups.items()})
    out.summary = {config: _method_summary(group, primary) for config, group in groups.items()}
    full = out.full_summary()  # with two compared full FT configurations, "vs full FT" stays blank
    for config, group in groups.items():
        out.rows.append(_method_row(config, group, metrics, primary, full["quality"] if full else None))
    _mark_best(out)
    return out


def _untuned_beside_tuned(ok: pd.DataFrame, groups: dict[str, pd.DataFrame]) -> set[str]:
    """The configurations `results.tuned_over_untuned` leaves out of every verdict (a method's plain runs where
    the method was also tuned on the task): tables show them, rankings do not."""
    from peftbench.results import tuned_over_untuned

    keys = [c for c in ("suite", "task", "model", "method", "role") if c in ok]
    rows = ok[keys].assign(_row=ok.index).to_dict("records")

    def facts(row: dict[str, Any]) -> tuple[tuple[Any, ...], str | None]:
        return tuple(row.get(k) for k in ("suite", "task", "model", "method")), row.get("role")
    kept = {row["_row"] for row in tuned_over_untuned(rows, facts)}
    return {config for config, group in groups.items() if not group.index.isin(kept).any()}


def _method_row(method: str, group: pd.DataFrame, metrics: list[str], primary: str, full_quality: float | None) -> dict:
    n = len(group)
    cells = [_text(method), _text(str(group["family"].iloc[0])), {"text": str(n), "sort": n}]
    for metric in metrics:
        values = group[f"metrics.{metric}"].dropna()
        mean = values.mean() if len(values) else None
        std = values.std(ddof=1) if len(values) > 1 else None
        cells.append({"text": fmt.mean_std(mean, std, len(values)), "sort": _num(mean)})
    relative = None
    if full_quality and not fmt.missing(full_quality):
        relative = 100.0 * group[f"metrics.{primary}"].mean() / full_quality
    cells.append({"text": fmt.percent(relative), "sort": _num(relative)})
    for column, _, show, _ in COST_COLUMNS:
        value = group[column].mean() if column in group else None
        cells.append({"text": show(value), "sort": _num(value)})
    return {"method": method, "cells": cells}


def _method_summary(group: pd.DataFrame, primary: str) -> dict[str, float]:
    """The means the Pareto plots and the summary need."""
    def mean(col: str) -> float:
        return float(group[col].mean()) if col in group else float("nan")

    q = group[f"metrics.{primary}"].dropna()
    return {"quality": float(q.mean()), "quality_std": float(q.std(ddof=1)) if len(q) > 1 else 0.0,
            "peak_memory_bytes": mean("peak_memory_bytes"), "train_seconds": mean("train_seconds"),
            "adapter_bytes": mean("adapter_bytes"), "trainable_params": mean("trainable_params"),
            "inference_overhead": mean("inference.overhead_served"),
            "inference_overhead_unmerged": mean("inference.overhead_unmerged"),
            "forgetting_nats": mean("forgetting.delta_nats")}


def _mark_best(table: TaskTable) -> None:
    """Flag the best value of each ranked column (all of them on a tie)."""
    for row in table.rows:
        for cell in row["cells"]:
            cell["best"] = cell["noise"] = False
    for index, column in enumerate(table.columns):
        values = [row["cells"][index]["sort"] for row in table.rows]
        known = [v for v in values if v is not None]
        if column.better is None or len(known) < 2:
            continue
        best = max(known) if column.better == "high" else min(known)
        for row in table.rows:
            row["cells"][index]["best"] = row["cells"][index]["sort"] == best


def _text(value: str) -> dict[str, Any]:
    return {"text": value, "sort": None}


def _num(value: Any) -> float | None:
    return None if fmt.missing(value) else float(value)
