"""`peftbench pilot`: measure the recommender's top candidates on the user's own data and hardware, then decide.

Order of work: everything that can refuse is checked before anything is written (the data and its columns, the
results folder, the recommender's candidates, a budget big enough for two); then the split, the suite YAML and
the plan are written under `<results>/<pilot name>/`; then the harness runs them (`tune=lr`, resumable like
any run: a rerun skips what is recorded, and reuses the saved plan); then the verdict and the pilot's report.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from peftbench.errors import UserError
from peftbench.pilot.planning import (
    BATCH,
    CPU_MAX_LENGTH,
    PilotCandidate,
    PilotPlan,
    concurrent_runs,
    fit_budget,
    order_candidates,
)
from peftbench.pilot.request import PilotRequest, check_data
from peftbench.pilot.suite_file import PilotData, measure_split, suite_document, write_split, write_suite
from peftbench.pilot.verdict import PilotVerdict, describe, judge
from peftbench.runs.tuning import validation_size


@dataclass
class PilotOutcome:
    plan: PilotPlan
    suite_path: Path
    verdict: PilotVerdict | None
    lines: list[str]


def _say(text: str) -> None:
    print(f"peftbench pilot: {text}", file=sys.stderr, flush=True)


def prepare(request: PilotRequest) -> tuple[PilotPlan, PilotData, list, list, dict[str, Any]]:
    """Everything checked, nothing written: the split's facts, the recommender's answer, the plan."""
    import time

    from peftbench.models.loading import tokenizer_for
    from peftbench.paths import check_results_dir

    started = time.perf_counter()
    check_results_dir(request.results, "--results")
    data = check_data(request)
    facts, train, test = measure_split(data, request, tokenizer_for(request.model),
                                       CPU_MAX_LENGTH if request.device == "cpu" else 512)
    saved = PilotPlan.load(request.results / request.name / "plan.json")
    identity = _identity(request, facts)
    if saved is not None and saved.request == identity:
        return saved, facts, train, test, {}
    answer = _recommendation(request, facts)
    candidates = _candidates(request, facts, answer)
    jobs = concurrent_runs(request.device)
    calibration = _calibrate(request, facts, candidates, jobs)
    validation_rows = validation_size(facts.train_rows)
    train_rows = facts.train_rows - validation_rows  # what a sweep run trains on; it is scored on the rest
    spent = time.perf_counter() - started  # profiling, the recommender and the calibration came off the budget
    chosen, steps, seconds = fit_budget(candidates, request.budget_seconds - spent, train_rows, validation_rows,
                                        request.device, request.kind == "generation", facts.max_target_length,
                                        request.max_candidates or 3, jobs, spent)
    plan = PilotPlan(1, identity, chosen, steps, BATCH[request.device], seconds, request.budget_seconds,
                     [calibration, f"{spent:.0f} s of the budget went to profiling the data, the recommender and "
                                   "the calibration run"], jobs)
    return plan, facts, train, test, answer


def _identity(request: PilotRequest, facts: PilotData) -> dict[str, Any]:
    return {"data": facts.fingerprint, "task": request.task, "model": request.model, "device": request.device,
            "gpu": request.gpu, "budget_seconds": request.budget_seconds, "candidates": request.max_candidates}


def _recommendation(request: PilotRequest, facts: PilotData) -> dict[str, Any]:
    """The recommender's answer for the full run on the target hardware (the pilot's machine by default)."""
    from peftbench.recommend.engine import recommend

    if request.device == "cuda" and not request.gpu:
        raise UserError("--device cuda needs --gpu (the card's memory, e.g. --gpu 24GB) to plan with the estimator")
    hardware = None if request.gpu else "cpu"
    # The data's size and lengths, not the file: its columns are the user's names (the split renames them).
    return recommend(request.task, gpu=request.gpu, hardware=hardware, model=request.model,
                     train_examples=facts.train_rows, seq_len=facts.max_length + facts.max_target_length,
                     tuning_runs=3, top=30, progress=True).to_dict()


def _candidates(request: PilotRequest, facts: PilotData, answer: dict[str, Any]) -> list[PilotCandidate]:
    ranked = order_candidates(answer["ranking"], answer["ranking"] + answer["not_ranked"])
    if len(ranked) < 2:
        raise UserError(f"{request.model} fits fewer than two candidate methods on "
                        f"{request.gpu or 'this CPU'} with evidence to rank: nothing to pilot ({answer['gpu']})")
    out = []
    for cand in ranked:
        q, band = cand.get("predicted_relative_quality"), cand.get("quality_interval")
        prior = (q, (band[1] - band[0]) / 2 / 1.2816) if q is not None and band else None
        full_run: dict[str, Any] = {k: cand[k] for k in ("batch_size", "gradient_accumulation",
                                                         "gradient_checkpointing", "gpus", "override") if k in cand}
        out.append(PilotCandidate(cand["method"], cand["hyperparameters"], _pilot_step_seconds(request, facts, cand),
                             full_run_gpu_hours=cand.get("gpu_hours"), prior=prior, full_run=full_run))
    return out


def _pilot_step_seconds(request: PilotRequest, facts: PilotData, cand: dict[str, Any]) -> float:
    """One optimizer step of the pilot's batch on the pilot's device, from the estimator."""
    import warnings

    from peftbench.estimate.api import estimate_setting

    hardware = ["cpu"] if request.device == "cpu" else [answer_profile(request)]
    overrides = {k: v for k, v in cand["hyperparameters"].items() if k != "learning_rate"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = estimate_setting(request.model, cand["method"], overrides=overrides, task_kind=request.kind,
                               batch_size=BATCH[request.device], seq_len=facts.max_length + facts.max_target_length,
                               dtype="fp32" if request.device == "cpu" else "bf16", hardware=hardware)
    return float(next(iter(est.profiles.values()))["step_seconds"])


def _calibrate(request: PilotRequest, facts: PilotData, candidates: list[PilotCandidate], jobs: int) -> str:
    """Scale every candidate's predicted step time by one real measurement: three steps of the first candidate
    at the pilot's shape, in fresh processes as runs would be, `jobs` of them side by side as the runs will be
    (`estimate.measure`). The estimator's CPU step times follow the machine's measured matmul rate, which a busy
    machine misreads (reference runs of SmolLM2 took 2.6-7.6 s a step where 10-23 s was predicted); their ratios
    between methods hold. Alone, the first candidate's step took 7.7 s where two side by side took 8.7-9.6 s each
    (the cores share memory bandwidth): a pilot calibrated alone ran 9% past its plan."""
    import statistics
    import time
    from concurrent.futures import ThreadPoolExecutor

    from peftbench.estimate.measure import measure

    first = candidates[0]
    spec = {"model": request.model, "method": first.method, "task_kind": request.kind, "steps": 3,
            "batch_size": BATCH[request.device], "seq_len": facts.max_length + facts.max_target_length,
            "overrides": {k: v for k, v in first.hyperparameters.items() if k != "learning_rate"},
            "num_labels": max(2, len(facts.labels)), "threads": 1}
    if request.device != "cpu":
        return "step times from the estimator (no calibration run on a GPU)"
    _say(f"calibrating step times: 3 steps of {first.method} at the pilot's shape, {jobs} at a time as the runs")
    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            measured = list(pool.map(lambda _: measure(spec, timeout=600), range(jobs)))
    except (RuntimeError, OSError, ValueError) as exc:
        return f"step times from the estimator alone (the calibration run failed: {str(exc)[:120]})"
    # the first step of each pays one-off kernel set-ups
    step = statistics.median(s for m in measured for s in m["step_seconds"][1:])
    factor = step / first.step_seconds
    for c in candidates:
        c.step_seconds *= factor
    took = time.perf_counter() - started
    return (f"step times calibrated by a real run of {first.method}, {jobs} at a time: {step:.2f} s a step measured, "
            f"{step / factor:.2f} s predicted (x{factor:.2f} for every candidate; {took:.0f} s)")


def answer_profile(request: PilotRequest) -> str:
    from peftbench.recommend.feasibility import resolve_gpu

    return resolve_gpu(request.gpu, None).profile


def run(request: PilotRequest, show_progress: bool = True) -> PilotOutcome:
    plan, facts, train, test, _ = prepare(request)
    folder = request.results / request.name
    write_split(facts, train, test)
    methods = [c.method for c in plan.candidates]
    suite_path = write_suite(request, suite_document(request, facts, methods, {
        "lr_multiplier": 1, "max_steps": plan.steps, "batch_size": plan.batch_size,
        "eval_batch_size": plan.batch_size}))
    plan.save(folder / "plan.json")
    _say(f"plan: {plan.describe()}")
    for note in plan.notes:
        _say(note)
    _say(f"suite: {suite_path} (rerun this command to resume; `peftbench run suite={suite_path}` works too)")
    _train(request, plan, suite_path, show_progress)
    return _conclude(request, plan, suite_path)


def _overrides(request: PilotRequest, plan: PilotPlan, suite_path: Path) -> list[str]:
    from peftbench.recommend.render import METHOD_KEYS, _yaml

    items = [f"suite={suite_path}", f"methods=[{','.join(c.method for c in plan.candidates)}]", "seeds=[0]",
             f"device={request.device}", f"jobs={plan.jobs}", "tune=lr", "save_adapters=false",
             # the tuned model's inference cost and forgetting take a third of a small CPU run: the decision takes
             # both from the recommender, and the full run measures them
             "measure_after_training=false"]
    for c in plan.candidates:
        items.append(f"methods.{c.method}.learning_rate={c.hyperparameters['learning_rate']:g}")
        items += [f"methods.{c.method}.{k}={_yaml(c.hyperparameters[k])}" for k in METHOD_KEYS
                  if c.hyperparameters.get(k) is not None and k in ("r", "lora_alpha", "alpha", "target_modules")]
    return items


def _train(request: PilotRequest, plan: PilotPlan, suite_path: Path, show_progress: bool) -> None:
    from peftbench.overrides import parse_overrides
    from peftbench.runs.plan import build_plan
    from peftbench.runs.runner import run_tuned
    from peftbench.runs.tuning import check_split_sizes, parse_tune

    overrides = parse_overrides(_overrides(request, plan, suite_path))
    tune = parse_tune(overrides.values.get("tune"), overrides.tune)
    assert tune is not None  # the pilot's own overrides say tune=lr
    # One run past a winning edge, the one the plan budgets (`planning.RUNS_PER_CANDIDATE`); no rerun at the
    # selected rate: the verdict reads the sweep's validation scores.
    tune = dataclasses.replace(tune, extensions=1, confirm=False)
    harness_plan = build_plan(overrides)
    check_split_sizes(harness_plan, tune)
    run_tuned(harness_plan, tune, request.results, show_progress=show_progress)


def _conclude(request: PilotRequest, plan: PilotPlan, suite_path: Path) -> PilotOutcome:
    import json

    from peftbench.results import ResultStore, latest_records

    store = ResultStore.for_suite(request.name, request.results)
    records = latest_records([store.path], include_sweep=True)
    priors = {c.method: c.prior for c in plan.candidates}
    costs = {c.method: c.full_run_gpu_hours for c in plan.candidates}
    metric = "accuracy" if request.kind == "classification" else "rougeL"
    verdict = judge(records, priors, costs, metric)
    unit = "GPU-h" if request.gpu else "CPU-h (this machine)"
    lines = describe(verdict, unit) if verdict else ["fewer than two candidates finished: no comparison (see the "
                                                     f"records in {store.path})"]
    if verdict is not None:
        lines.append(_full_run_line(verdict, plan, suite_path, request, _train_rows(request)))
        if request.export:
            lines += _export(request, plan, verdict)
        (request.results / request.name / "decision.json").write_text(json.dumps(
            decision_document(asdict(plan), lines, verdict), indent=1, default=str))
    return PilotOutcome(plan, suite_path, verdict, lines)


def decision_document(plan: dict[str, Any], lines: list[str], verdict: PilotVerdict) -> dict[str, Any]:
    """decision.json: what the pilot answered and the measurements behind it, as the pilot's page reads them."""
    return {"plan": plan, "lines": lines, "pick": verdict.decision.pick.method if verdict.decision else None,
            "scored_on": verdict.scored_on, "rows": verdict.rows,
            "measured": {m: {"run_id": r.run_id, "learning_rate": r.learning_rate, "score": r.score,
                             "rates_tried": r.rates_tried} for m, r in verdict.measured.items()},
            "differences": verdict.differences, "posterior": verdict.posterior, "learned": verdict.learned,
            "baseline": verdict.baseline}


def _export(request: PilotRequest, plan: PilotPlan, verdict: PilotVerdict) -> list[str]:
    """The decision as the named tool reads it (`peftbench.export`), at the learning rate the pilot selected."""
    from peftbench.export import export, precision_from_override, setting_from_candidate

    assert request.export is not None  # called only where the request names a tool to export for
    pick = verdict.decision.pick.method if verdict.decision else verdict.best_measured
    chosen = next(c for c in plan.candidates if c.method == pick)
    measured = verdict.measured.get(pick)
    hyperparameters = dict(chosen.hyperparameters)
    if measured is not None and measured.learning_rate:
        hyperparameters["learning_rate"] = measured.learning_rate
    candidate = {"method": pick, "hyperparameters": hyperparameters, **chosen.full_run}
    setting = setting_from_candidate(candidate, request.model, precision_from_override(chosen.full_run["override"]),
                                     3.0, request.results / request.name / "data" / "train.jsonl",
                                     task_kind=request.kind)
    out_dir = request.results / request.name / f"export-{request.export}"
    files = export(setting, request.export, out_dir)
    return [f"exported for {request.export}: " + ", ".join(str(f) for f in files)]


def _train_rows(request: PilotRequest) -> int:
    path = request.results / request.name / "data" / "train.jsonl"
    return sum(1 for line in path.open() if line.strip()) if path.is_file() else 0


def _full_run_line(verdict: PilotVerdict, plan: PilotPlan, suite_path: Path, request: PilotRequest,
                   train_rows: int) -> str:
    """The command for the full run: the pick at the rate the pilot selected, three epochs of every training row,
    three seeds, on the target device."""
    pick = verdict.decision.pick.method if verdict.decision else verdict.best_measured
    run = verdict.measured.get(pick)
    rate = f" methods.{pick}.learning_rate={run.learning_rate:g}" if run and run.learning_rate else ""
    steps = max(1, round(3 * train_rows / plan.batch_size))
    device = " device=cuda" if request.gpu else ""
    return (f"full run: peftbench run suite={suite_path} methods=[{pick}]{rate} train.max_steps={steps} "
            f"seeds=[0,1,2]{device} (the pilot's selected rate, 3 epochs at batch {plan.batch_size}, scored on the "
            "test rows the pilot never saw)")
