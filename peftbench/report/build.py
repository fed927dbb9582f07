"""Assemble a suite's report context from its results file, and render and write the pages."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from peftbench.report import fmt, pareto, plots, predictions, runs, tables, verdict
from peftbench.report.cache import Deadline, DerivedCache
from peftbench.report.render import render_page

if TYPE_CHECKING:
    from peftbench.record import RunRecord

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
    task_tables = _task_tables(table, task_specs)
    derived = predictions.Derived(predictions.HardwareMatrix(note="estimates not requested (--no-estimates)."),
                                  [], "recommender not requested (--no-estimates).")
    if options.estimates:
        shapes = predictions.suite_shapes(table, task_specs)
        assert options.cache is not None and options.deadline is not None  # Options.__post_init__ sets both
        derived = predictions.derive(suite, shapes, path.parent.parent, options.cache, options.deadline,
                                     progress=options.progress)
    informs = _informativeness(suite, records)
    summary = [verdict.measured_summary(entry, informs.get(entry["table"].task)) for entry in task_tables]
    _no_winner_inside_noise(task_tables, summary)
    provenance = runs.provenance(records)
    picks = {p["task"]: p for p in derived.picks}
    _draw_plots(task_tables, picks)
    prediction_rows = runs.prediction_rows(records)
    summaries = {t["table"].task: t["table"].best_by_method() for t in task_tables}
    return {
        "suite": suite, "description": description, "records": len(records),
        "ok": sum(r.ok for r in records),
        "latest": max((r.finished_at or "" for r in records), default=""),
        "verdicts": _verdicts(summary, picks, derived, provenance["cpu_only"]),
        "summary": summary, "tasks": task_tables,
        "best_per_profile": _separating(predictions.best_per_profile(derived.matrix, summaries), summary),
        "matrix": derived.matrix, "picks": derived.picks, "picks_note": derived.picks_note,
        "prediction_rows": prediction_rows, "prediction_stats": runs.prediction_stats(prediction_rows),
        "prediction_svg": plots.prediction_svg(prediction_rows, "predicted"),
        "failures": runs.failure_rows(records), "provenance": provenance,
    }


def _task_tables(table: Any, task_specs: dict[str, Any]) -> list[dict[str, Any]]:
    """Each task's comparison table (tasks without a successful run are left out), with its page anchor."""
    entries = []
    for index, task in enumerate(sorted(table["task"].astype(str).unique())):
        spec = task_specs.get(task)
        result = tables.task_table(table, task, tuple(getattr(spec, "metrics", ())))
        if result is not None:
            entries.append({"table": result, "anchor": f"task-{index}", "prefix": f"pareto{index}",
                            "description": getattr(spec, "description", "")})
    return entries


def _draw_plots(task_tables: list[dict[str, Any]], picks: dict[str, dict[str, Any]]) -> None:
    """Each task's Pareto panels, with the recommender's pick marked where it was measured."""
    for entry in task_tables:
        table: tables.TaskTable = entry["table"]
        pick = verdict.pick_configuration(table, (picks.get(table.task) or {}).get("method"))
        entry["pick"] = pick
        entry["panels"] = pareto.pareto_panels(table.summary, table.primary, entry["prefix"], pick=pick,
                                               task=table.task, shown_only=table.untuned_beside_tuned)


def _verdicts(summary: list[dict[str, Any]], picks: dict[str, dict[str, Any]], derived: predictions.Derived,
              on_cpu: bool) -> list[dict[str, Any]]:
    out = []
    for measured in summary:
        pick = picks.get(measured["task"])
        where = "" if not pick else verdict.gpu_classes(measured["task"], pick["method"], pick.get("gpu", ""),
                                                        derived.matrix)
        problem = derived.problems.get(measured["task"]) or derived.picks_note.removeprefix("recommender ")
        out.append(verdict.task_verdict(measured, pick, problem, where, on_cpu))
    return out


def _no_winner_inside_noise(task_tables: list[dict[str, Any]], summary: list[dict[str, Any]]) -> None:
    """On a task whose best is inside its noise, the per-task table's best quality values are marked as noise
    (≈, grey) instead of highlighted: a highlight there would name a winner the summary says is not one."""
    noisy = {s["task"] for s in summary if s["state"] in verdict.NOISY}
    for entry in task_tables:
        table: tables.TaskTable = entry["table"]
        if table.task not in noisy:
            continue
        quality = [i for i, column in enumerate(table.columns) if column.quality]
        for row in table.rows:
            for index in quality:
                cell = row["cells"][index]
                if cell.get("best"):
                    cell.update(best=False, noise=True, text=f"≈ {cell['text']}")


def _informativeness(suite: str, records: list[RunRecord]) -> dict[str, Any]:
    from peftbench.informativeness import suite_baselines, task_informativeness

    return task_informativeness([r for r in records if not r.is_sweep], suite_baselines(suite))


def _separating(rows: list[dict[str, Any]], summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """No per-profile pick on a task that cannot separate methods (any pick there would be noise); on a task
    whose best is within noise of others, the per-profile best is marked as noise too."""
    states = {s["task"]: s["state"] for s in summary}
    for row in rows:
        row["noise"] = states.get(row["task"]) == "tied"
        if states.get(row["task"]) == "none":
            row["picks"] = {profile: "no method separates" for profile in row["picks"]}
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
