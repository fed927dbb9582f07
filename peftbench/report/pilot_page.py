"""The pilot's report: one self-contained page, the decision first.

What a team lead needs on the first screen: which method to train, whether the measured gap to the runner-up
is real (the pilot's paired bootstrap interval and its probability with the recommender's prior, from
`decision.json`), the full run's settings, predicted cost and command, what the runner-up would have given, and
the reasons. Below: each candidate's test score with its interval, its validation score at every learning rate
it tried, the curves, what the pilot cost against its budget, and the plan.

Inputs are the pilot folder's own files: `decision.json` and `plan.json` (written by `peftbench pilot`) and the
run records, read through `results.load_table` like every other report. A pilot whose runs have not finished
(no `decision.json` yet) still gets a page: the candidates measured so far, and no verdict.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from peftbench.report import fmt, pilot_plots
from peftbench.report.render import render_page
from peftbench.report.verdict import display, gpu_cost_text

PAGE = "report.html"
FULL_RUN = re.compile(r"^full run: (?P<command>.*?)(?: \((?P<note>[^()]*)\))?$")


def is_pilot(folder: Path) -> bool:
    """A results folder written by `peftbench pilot` (its plan is there from before the first run)."""
    return (folder / "plan.json").is_file()


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _value(row: dict[str, Any], key: str) -> Any:
    """A table cell, None where the column is absent or the cell empty (pandas fills gaps with NaN)."""
    value = row.get(key)
    return None if fmt.missing(value) else value


def _runs(folder: Path) -> list[dict[str, Any]]:
    """Every run of the pilot, sweep runs included, as the few facts the page shows."""
    from peftbench.results import RUNS_FILE, load_table

    path = folder / RUNS_FILE
    table = load_table([path], include_sweep=True) if path.is_file() else None
    out = []
    for row in ([] if table is None or table.empty else table.to_dict("records")):
        scores = _value(row, "eval_rows.scores")
        out.append({"run_id": row.get("run_id"), "method": row["method"], "ok": row.get("status") == "ok",
                    "role": _value(row, "role"),
                    "rate": _value(row, "hyperparameters.learning_rate"), "scores": list(scores or []),
                    "metric": _value(row, "eval_rows.metric"), "curve": list(_value(row, "train_loss_curve") or []),
                    "wall": _value(row, "wall_seconds"), "train": _value(row, "train_seconds"),
                    "finished": _value(row, "finished_at"), "device": _value(row, "device.type")})
    return out


def mean_interval(scores: list[float]) -> tuple[float | None, float | None, float | None]:
    """Mean of per-row scores and its 80% bootstrap interval, as the pilot's verdict resamples its rows."""
    from peftbench.pilot.verdict import mean_interval as resampled

    if not scores:
        return None, None, None
    if len(scores) < 2:
        return float(scores[0]), None, None
    return resampled(scores)


def _interval_text(low: float | None, high: float | None, sign: str = "") -> str:
    return "" if low is None or high is None else f"{low:{sign}.1f} to {high:{sign}.1f}"


def _candidate(plan_cand: dict[str, Any], runs: list[dict[str, Any]], decision: dict[str, Any],
               unit: str, measured_id: str | None) -> dict[str, Any]:
    """One candidate's row: test score and interval, difference to the best, validation score per rate, cost."""
    method = plan_cand["method"]
    mine = [r for r in runs if r["method"] == method]
    selected = next((r for r in mine if r["run_id"] == measured_id), None)
    score, low, high = mean_interval(selected["scores"] if selected else [])
    sweep = []
    for run in (r for r in mine if r["role"] == "sweep" and r["rate"] is not None):
        v, lo, hi = mean_interval(run["scores"]) if run["ok"] else (None, None, None)
        sweep.append({"rate": run["rate"], "score": v, "low": lo, "high": hi, "ok": run["ok"],
                      "selected": bool(selected and run["rate"] == selected["rate"]),
                      "text": "failed" if not run["ok"] else f"{v:.1f}" if v is not None else "—",
                      "interval": _interval_text(lo, hi)})
    sweep.sort(key=lambda p: p["rate"])
    diff = (decision.get("differences") or {}).get(method)
    post = (decision.get("posterior") or {}).get(method)
    hours = plan_cand.get("full_run_gpu_hours")
    return {"method": method, "name": display(method), "score": score, "low": low, "high": high,
            "score_text": "not measured" if score is None else f"{score:.1f}", "interval": _interval_text(low, high),
            "rate": selected["rate"] if selected else None, "scored_rows": len(selected["scores"]) if selected else 0,
            "suggested": plan_cand["hyperparameters"].get("learning_rate"),
            "diff": diff, "diff_text": "" if not diff else f"{diff[0]:+.1f} ({_interval_text(diff[1], diff[2], '+')})",
            "posterior": post, "sweep": sweep, "runs": len(mine), "failed": sum(not r["ok"] for r in mine),
            "seconds": sum(r["wall"] or 0 for r in mine), "train_seconds": sum(r["train"] or 0 for r in mine),
            "full_cost": hours, "full_cost_text": gpu_cost_text(hours, unit),
            "full_run": plan_cand.get("full_run") or {},
            "curves": [{"points": r["curve"], "rate": r["rate"] or 0.0, "selected": r is selected}
                       for r in mine if r["curve"] and r["ok"]]}


def measured_run_ids(folder: Path, decision: dict[str, Any], methods: list[str]) -> tuple[dict[str, str], str]:
    """method -> id of the run the verdict scores it by, and the rows those runs were scored on ("validation" or
    "test"): decision.json's, else (before a decision, or one written before it named them) the verdict's own
    choice over the records (`pilot.verdict.measured_runs`)."""
    named = decision.get("measured")
    if named and decision.get("scored_on"):
        return {m: str(v["run_id"]) for m, v in named.items()}, str(decision["scored_on"])
    from peftbench.pilot.verdict import measured_runs
    from peftbench.results import RUNS_FILE, latest_records

    path = folder / RUNS_FILE
    if not path.is_file():
        return {}, "validation"
    measured, rows = measured_runs(latest_records([path], include_sweep=True), methods)
    return {m: r.run_id for m, r in measured.items()}, rows


def _probability_better(posterior: tuple[float, float] | None) -> float | None:
    """P(the measured best is truly ahead of this candidate), from its combined difference (mean, se) as a normal:
    the measurement and the recommender's prior together, as the decision weighs them."""
    if not posterior or posterior[1] <= 0:
        return None
    mean, se = posterior
    return 0.5 * (1 + math.erf(-mean / se / math.sqrt(2)))


def _full_run(lines: list[str]) -> tuple[str, str]:
    """(the full run's command, its note) from the decision's lines."""
    for line in lines:
        match = FULL_RUN.match(line)
        if match:
            return match["command"], match["note"] or ""
    return "", ""


def _runner_up(candidates: list[dict[str, Any]], pick: str, best: str) -> dict[str, Any] | None:
    """Who the pick beat: the measured best when the pick is a cheaper one within noise, else the next best score."""
    if pick != best:
        return next((c for c in candidates if c["method"] == best), None)
    others = [c for c in candidates if c["method"] != pick and c["score"] is not None]
    return max(others, key=lambda c: c["score"]) if others else None


def _gap(pick: dict[str, Any], runner: dict[str, Any] | None, best: str, decision: dict[str, Any],
         metric: str, scored_on: str) -> dict[str, Any]:
    """Whether the measured difference between the pick and the runner-up is real, in one sentence."""
    if runner is None:
        return {"label": "one candidate", "css": "noise", "text": "no other candidate was measured", "probability": ""}
    # decision.json's differences are each candidate minus the measured best, over the same rows
    other = runner if pick["method"] == best else pick
    diff = (decision.get("differences") or {}).get(other["method"])
    if not diff:
        return {"label": "not compared", "css": "noise", "probability": "",
                "text": "the two were not scored on the same rows: no paired comparison"}
    lead, low, high = -diff[0] + 0.0, -diff[2] + 0.0, -diff[1] + 0.0  # the best's lead (+ 0.0: no "-0.0")
    real = low > 0
    posterior = (decision.get("posterior") or {}).get(other["method"])
    probability = _probability_better(tuple(posterior) if posterior else None)
    text = (f"{display(best)} leads {display(other['method'])} by {lead:.1f} {metric} points "
            f"(80% paired bootstrap over the same {scored_on} rows: {low:+.1f} to {high:+.1f})")
    if pick["method"] != best:
        text += f"; {pick['name']} is within that noise and cheaper"
    return {"label": "a real gap" if real else "within noise", "css": "sure" if real else "noise", "text": text,
            "probability": "" if probability is None else
            f"{_chance(probability)} probability that {display(best)} is truly ahead (measurement and the "
            "recommender's prior combined)"}


def _chance(probability: float) -> str:
    """A probability as a reader takes it: never 100% or 0% from a few dozen rows."""
    return "over 99%" if probability > 0.99 else "under 1%" if probability < 0.01 else f"{probability:.0%}"


def _settings(pick: dict[str, Any]) -> list[tuple[str, str]]:
    run = pick["full_run"]
    rows = [("learning rate", f"{pick['rate']:.3g} (selected by the pilot)" if pick["rate"] else "—")]
    for key, label in (("batch_size", "batch size"), ("gradient_accumulation", "gradient accumulation"),
                       ("gradient_checkpointing", "gradient checkpointing"), ("gpus", "GPUs")):
        if key in run:
            rows.append((label, str(run[key]).lower() if isinstance(run[key], bool) else str(run[key])))
    return rows


def _verdict(candidates: list[dict[str, Any]], decision: dict[str, Any], metric: str,
             rows: int, scored_on: str) -> dict[str, Any] | None:
    if not decision.get("pick"):
        return None
    by_method = {c["method"]: c for c in candidates}
    pick = by_method.get(decision["pick"])
    scores = [c["score"] for c in candidates if c["score"] is not None]
    if pick is None or not scores:  # a decision whose records are gone: nothing to show it with
        return None
    top = max(scores)
    # on a tie for the best score the pick is the measured best, as the verdict took it
    best = pick["method"] if pick["score"] == top else next(c["method"] for c in candidates if c["score"] == top)
    runner = _runner_up(candidates, pick["method"], best)
    lines = [str(line) for line in decision.get("lines") or []]
    command, note = _full_run(lines)
    return {"pick": pick, "best": best, "runner": runner, "gap": _gap(pick, runner, best, decision, metric, scored_on),
            "settings": _settings(pick), "command": command, "command_note": note, "metric": metric, "rows": rows,
            "reasons": [line for line in lines if not line.startswith(("full run:", "exported for"))]}


def _elapsed(runs: list[dict[str, Any]]) -> float | None:
    """Wall seconds from the first run's start to the last run's end (runs overlap when several run at once)."""
    spans = []
    for run in runs:
        try:
            end = datetime.fromisoformat(str(run["finished"]).replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
        spans.append((end - float(run["wall"] or 0), end))
    return max(e for _, e in spans) - min(s for s, _ in spans) if spans else None


def _plan(plan: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    elapsed = _elapsed(runs)
    budget = plan.get("budget_seconds")
    devices = sorted({str(r["device"]) for r in runs if r["device"]})
    return {"steps": plan.get("steps"), "batch_size": plan.get("batch_size"), "jobs": plan.get("jobs", 1),
            "candidates": len(plan.get("candidates") or []), "predicted": fmt.human_seconds(plan.get("seconds")),
            "budget": fmt.human_seconds(budget), "elapsed": fmt.human_seconds(elapsed),
            "share": "" if not elapsed or not budget else f"{elapsed / budget:.0%}",
            "measured": fmt.human_seconds(sum(r["wall"] or 0 for r in runs)),
            "device": "/".join(d.upper() for d in devices) or "—",
            "runs": len(runs), "failed": sum(not r["ok"] for r in runs), "notes": plan.get("notes") or []}


def pilot_context(folder: Path) -> dict[str, Any]:
    """Everything the pilot template shows, as plain data, from the pilot's folder."""
    from peftbench.errors import UserError

    plan = _json(folder / "plan.json")
    if not plan:
        raise UserError(f"{folder} holds no pilot plan (plan.json): not a `peftbench pilot` folder")
    decision = _json(folder / "decision.json")
    runs = _runs(folder)
    request = plan.get("request") or {}
    unit = "GPU-h" if request.get("gpu") else "CPU-h (this machine)"
    plan_candidates = plan.get("candidates") or []
    measured, rows_from = measured_run_ids(folder, decision, [c["method"] for c in plan_candidates])
    candidates = [_candidate(c, runs, decision, unit, measured.get(c["method"])) for c in plan_candidates]
    metric = next((r["metric"] for r in runs if r["metric"]), "score")
    rows = decision.get("rows") or max((c["scored_rows"] for c in candidates), default=0)
    return {"name": folder.name, "request": request, "unit": unit, "metric": metric, "rows": rows,
            "scored_on": rows_from,
            "verdict": _verdict(candidates, decision, metric, rows, rows_from), "candidates": candidates,
            "plan": _plan(plan, runs), "suite_path": str(folder / "suite.yaml"),
            "sweep_svg": pilot_plots.sweep_svg(candidates, metric), "loss_svg": pilot_plots.loss_svg(candidates)}


def write_pilot_report(folder: Path, output: Path | None = None) -> Path:
    """Render the pilot's page to `output` (default: `report.html` in the pilot's folder)."""
    output = output or folder / PAGE
    context = pilot_context(folder)
    html = render_page("pilot.html.jinja", title=f"peftbench · {context['name']}", **context)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(html, encoding="utf-8")
    return output
