"""Assemble a suite's report context from its results file, and render and write the pages."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from peftbench.report import fmt, plots, predictions, runs, tables
from peftbench.report.cache import Deadline, DerivedCache
from peftbench.report.render import render_page

# Seconds of uncached estimator + recommender work per `report` command: no limit by default (the page
# shows what it promises; progress with an ETA says how long), `--estimate-budget S` caps it.
DEFAULT_BUDGET_S: float | None = None


@dataclass
class Options:
    """How much of the optional, slow work (estimator, recommender) to do, and where answers are kept."""

    estimates: bool = True
    cache: DerivedCache | None = None
    deadline: Deadline | None = None
    progress: bool = False  # a progress bar with an ETA on stderr while answers are computed

    def __post_init__(self) -> None:
        self.cache = self.cache or DerivedCache(None)
        self.deadline = self.deadline or Deadline(DEFAULT_BUDGET_S)


@dataclass
class Written:
    suite: str
    path: Path
    bytes: int
    seconds: float
    runs: int
    ok: int
    tasks: int


def _suite_tasks(suite: str) -> tuple[dict[str, Any], str]:
    """Task specs and description from the suite YAML, when it still exists (results may outlive it)."""
    from peftbench.errors import UserError
    from peftbench.suites import load_suite

    try:
        spec = load_suite(suite)
    except UserError:
        return {}, ""
    return {t.name: t for t in spec.tasks}, spec.description


def suite_context(suite: str, path: Path, options: Options | None = None) -> dict[str, Any]:
    """Everything the suite template shows, as plain data, from the suite's runs file."""
    from peftbench.results import ResultStore, load_table

    options = options or Options()
    records = ResultStore(path).records()
    if not records:
        from peftbench.errors import UserError

        raise UserError(f"no runs recorded in {path}")
    table = load_table([path])
    task_specs, description = _suite_tasks(suite)
    task_names = sorted(table["task"].astype(str).unique())
    task_tables = []
    for index, task in enumerate(task_names):
        spec = task_specs.get(task)
        result = tables.task_table(table, task, tuple(getattr(spec, "metrics", ())))
        if result is None:
            continue
        svg = plots.pareto_svg(result.summary, result.primary, f"pareto{index}")
        task_tables.append({"table": result, "pareto": svg, "anchor": f"task-{index}",
                            "inference_pareto": plots.inference_pareto_svg(result.summary, result.primary,
                                                                           f"inference{index}"),
                            "description": getattr(spec, "description", "")})
    prediction_rows = runs.prediction_rows(records)
    derived = predictions.Derived(predictions.HardwareMatrix(note="estimates not requested (--no-estimates)."),
                                  [], "recommender not requested (--no-estimates).")
    if options.estimates:
        shapes = predictions.suite_shapes(table, task_specs)
        derived = predictions.derive(suite, shapes, path.parent.parent, options.cache, options.deadline,
                                     progress=options.progress)
    matrix = derived.matrix
    summaries = {t["table"].task: t["table"].best_by_method() for t in task_tables}
    informs = _informativeness(suite, records)
    return {
        "suite": suite, "description": description, "records": len(records),
        "ok": sum(r.get("status") == "ok" for r in records),
        "latest": max((str(r.get("finished_at") or "") for r in records), default=""),
        "summary": _summary(task_tables, informs), "tasks": task_tables,
        "best_per_profile": _separating(predictions.best_per_profile(matrix, summaries), informs), "matrix": matrix,
        "picks": derived.picks, "picks_note": derived.picks_note,
        "prediction_rows": prediction_rows, "prediction_stats": runs.prediction_stats(prediction_rows),
        "prediction_svg": plots.prediction_svg(prediction_rows, "predicted"),
        "failures": runs.failure_rows(records), "provenance": runs.provenance(records),
    }


def _informativeness(suite: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    from peftbench.informativeness import suite_baselines, task_informativeness

    return task_informativeness([r for r in records if r.get("role") != "sweep"], suite_baselines(suite))


def _separating(rows: list[dict[str, Any]], informs: dict[str, Any]) -> list[dict[str, Any]]:
    """No per-profile pick on a task that cannot separate methods: any pick there would be noise."""
    for row in rows:
        info = informs.get(row["task"])
        if info is not None and not info.informative and info.detectable_difference is not None:
            row["picks"] = {profile: "no method separates" for profile in row["picks"]}
    return rows


def _summary(task_tables: list[dict[str, Any]], informs: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Best method per task by the primary metric, and the cheapest method within a point of it. A task that
    cannot separate methods names none ("no method separates"); a best method whose lead is inside the
    task's smallest detectable difference is named with the methods it ties with. A method tuned on the task
    competes with its tuned runs only; its plain runs stay in the table, not in the summary."""
    rows = []
    for entry in task_tables:
        table: tables.TaskTable = entry["table"]
        compared = table.compared()
        ranked = sorted(compared.items(), key=lambda kv: -kv[1]["quality"])
        best, values = ranked[0]
        near = [(m, v) for m, v in ranked if v["quality"] >= values["quality"] - 1.0]
        lean = min(near, key=lambda kv: (fmt.missing(kv[1]["peak_memory_bytes"]), kv[1]["peak_memory_bytes"]))
        full = table.full_summary()
        relative = 100.0 * values["quality"] / full["quality"] if full and full["quality"] else None
        info = (informs or {}).get(table.task)
        note, separates = "", True
        if info is not None and not info.informative and info.detectable_difference is not None:
            best, separates, note = "no method separates", False, info.reason
        elif info is not None and info.detectable_difference is not None:
            tied = info.tied_with_best({m: v["quality"] for m, v in compared.items()})
            if len(tied) > 1:
                note = (f"within the smallest detectable difference ({info.detectable_difference:.1f} points) "
                        f"of {', '.join(m for m in tied if m != best)}")
        rows.append({"task": table.task, "anchor": entry["anchor"], "kind": table.kind, "primary": table.primary,
                     "best": best, "separates": separates, "note": note, "quality": f"{values['quality']:.1f}",
                     "relative": fmt.percent(relative) if separates else "—",
                     "lean": lean[0], "lean_quality": f"{lean[1]['quality']:.1f}",
                     "lean_memory": fmt.human_bytes(lean[1]["peak_memory_bytes"]), "methods": len(ranked)})
    return rows


def write_suite_report(suite: str, path: Path, output: Path, options: Options | None = None) -> Written:
    """Render one suite's page to `output` from its runs file."""
    started = time.perf_counter()
    context = suite_context(suite, path, options)
    html = render_page("suite.html.jinja", title=f"peftbench · {suite}", **context)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(html, encoding="utf-8")
    return Written(suite, output, len(html.encode()), time.perf_counter() - started, context["records"],
                   context["ok"], len(context["tasks"]))


def write_index(written: list[Written], output: Path) -> Path:
    """The index page linking every suite's report (relative links: the folder can move as a whole)."""
    # "./" first: a suite folder named like "javascript:…" must stay a relative link, not become a URL scheme
    entries = [{"suite": w.suite, "href": "./" + quote(w.path.name), "runs": w.runs, "ok": w.ok, "tasks": w.tasks,
                "size": fmt.human_bytes(w.bytes)} for w in written]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_page("index.html.jinja", title="peftbench reports", entries=entries), encoding="utf-8")
    return output
