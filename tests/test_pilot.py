"""`peftbench pilot`: its checks (one line, exit 2, nothing written), its split, its budget plan and its verdict;
end to end on a real small model and real reviews (slow)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from peftbench.errors import UserError
from peftbench.pilot.planning import MIN_STEPS, PilotCandidate, fit_budget, order_candidates
from peftbench.pilot.request import parse_budget
from peftbench.pilot.verdict import judge, paired_interval
from peftbench.record import RunRecord

REPO = Path(__file__).resolve().parents[1]


def _reviews(path: Path, rows: int = 120, classes: tuple[str, ...] = ("negative", "neutral", "positive")) -> Path:
    """Real drug reviews (the shipped extract) as a user's CSV, with the user's own column names."""
    source = [json.loads(line) for line in (REPO / "suites/data/drug_review_sentiment/train.jsonl").open()]
    kept = [r for r in source if r["label"] in classes][:rows]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "sentiment"])
        writer.writerows([r["text"], r["label"]] for r in kept)
    return path


def _pilot(*args: str, cwd: Path, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "peftbench", "pilot", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("text, seconds", [("15m", 900), ("2h", 7200), ("1h30m", 5400), ("90s", 90), ("20", 1200)])
def test_budgets_read_as_durations(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5m", "0m", "1e9h"])
def test_a_budget_that_is_no_duration_is_refused(text):
    with pytest.raises(UserError):
        parse_budget(text)


@pytest.mark.parametrize("extra, says", [
    (["--text-column", "body"], "no column 'body'"),
    (["--label-column", "sentiment", "--text-column", "review", "--budget", "soon"], "--budget must be"),
    (["--model", "llama-3.1-8b"], "is a preset"),
    (["--task", "multiple_choice"], "pilot runs"),
    (["--input-column", "review"], "do not apply to a classification task"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, extra, says):
    data = _reviews(tmp_path / "reviews.csv")
    base = {"--data": str(data), "--task": "classification", "--model": "minilm", "--budget": "15m",
            "--label-column": "sentiment", "--text-column": "review", "--results": str(tmp_path / "res")}
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        base[flag] = value
    proc = _pilot(*[x for kv in base.items() for x in kv], cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and says in proc.stderr, proc.stderr
    assert not (tmp_path / "res").exists()


def test_a_one_class_label_or_too_few_rows_is_refused(tmp_path):
    one = _reviews(tmp_path / "one.csv", rows=80, classes=("positive",))
    few = _reviews(tmp_path / "few.csv", rows=30)
    for data, says in ((one, "has one class"), (few, "needs at least")):
        proc = _pilot("--data", str(data), "--task", "classification", "--text-column", "review", "--label-column",
                      "sentiment", "--model", "minilm", "--budget", "15m", "--results", str(tmp_path / "res"),
                      cwd=tmp_path)
        assert proc.returncode == 2 and says in proc.stderr, proc.stderr
    assert not (tmp_path / "res").exists()


def test_the_split_is_by_content_stable_and_disjoint(tmp_path):
    from types import SimpleNamespace

    from peftbench.pilot.suite_file import split_rows

    rows = [{"review": f"review {i}", "sentiment": "positive" if i % 2 else "negative"} for i in range(100)]
    request = SimpleNamespace(columns={"text": "review", "label": "sentiment"})
    train, test = split_rows(rows, request)
    again_train, again_test = split_rows(list(reversed(rows)), request)
    assert (train, test) == (again_train, again_test)  # the file's order does not matter
    assert len(test) == 20 and not {r["text"] for r in train} & {r["text"] for r in test}
    assert set(train[0]) == {"text", "label"}


def _candidate(method: str, step: float) -> PilotCandidate:
    return PilotCandidate(method, {"learning_rate": 1e-3}, step)


def test_the_plan_fits_the_budget_with_the_most_candidates_it_can():
    candidates = [_candidate(m, 1.0) for m in ("lora", "ia3", "full")]
    chosen, steps, seconds = fit_budget(candidates, 7200, 256, 80, "cpu", False, 0, 3)
    assert [c.method for c in chosen] == ["lora", "ia3", "full"] and seconds <= 0.9 * 7200 and steps >= MIN_STEPS
    chosen, steps, seconds = fit_budget(candidates, 900, 256, 80, "cpu", False, 0, 3)
    assert len(chosen) == 2 and seconds <= 0.9 * 900
    with pytest.raises(UserError, match="too small for two candidates .* need about"):
        fit_budget(candidates, 60, 256, 80, "cpu", False, 0, 3)


def test_the_plan_times_the_runs_as_the_harness_schedules_them():
    """The 15-minute SmolLM2 pilot: full fine-tuning's runs took ~210 s, IA3's ~150 s, two at a time; the sweep and
    the extensions ran from 21:09:12 to 21:22:06 (774 s), a worker idling at the end of each phase. Summed work over
    two workers (720 s) is short by that idling; the schedule is not."""
    from peftbench.pilot.planning import scheduled_seconds

    assert scheduled_seconds([210.0, 150.0], 2) == pytest.approx(774, rel=0.02)
    assert scheduled_seconds([210.0, 150.0], 2) > 4 * (210 + 150) / 2
    assert scheduled_seconds([100.0, 100.0], 1) == 800


def test_full_fine_tuning_joins_the_candidates_when_it_fits():
    ranking = [{"method": m, "fits": True} for m in ("lora", "ia3", "adapter", "vera")]
    full = {"method": "full", "fits": True}
    assert [c["method"] for c in order_candidates(ranking, ranking + [full])][:3] == ["lora", "ia3", "full"]
    assert "full" not in [c["method"] for c in order_candidates(ranking, ranking + [{**full, "fits": False}])]


def _record(method: str, rows: list[float], majority: float | None = None) -> RunRecord:
    return RunRecord.from_dict({"status": "ok", "method": method, "role": "selected", "run_id": method, "suite": "s",
                                "task": "t", "hyperparameters": {"learning_rate": 1e-3},
                                "eval_rows": {"metric": "accuracy", "scores": rows},
                                **({"eval_baselines": {"majority": majority}} if majority is not None else {})})


def test_the_verdict_bootstraps_paired_rows_and_says_whether_the_gap_is_real():
    a = [100.0] * 70 + [0.0] * 30
    b = [100.0] * 50 + [0.0] * 50  # wrong on 20 more of the same rows: a real gap
    c = [100.0] * 68 + [0.0] * 2 + [100.0] + [0.0] * 29  # a few rows apart from a, both ways: noise
    diff, low, high = paired_interval(b, a)
    assert diff == pytest.approx(-20) and high < 0
    verdict = judge([_record("lora", a), _record("ia3", b), _record("full", c)],
                    {"lora": (0.95, 0.03), "ia3": (0.9, 0.05), "full": (1.0, 0.02)},
                    {"lora": 1.0, "ia3": 0.8, "full": 4.0}, "accuracy")
    assert verdict.best_measured == "lora" and verdict.differences["ia3"][2] < 0 < verdict.differences["full"][2]
    assert verdict.decision.pick.method == "lora"  # full is within noise but costs four times as much
    assert not verdict.separates


def test_a_pilot_where_no_candidate_beat_the_majority_class_decides_by_the_prior_and_says_so():
    """Both candidates predict the majority class on every test row (a CPU pilot too short to learn): the
    bootstrap interval of their difference has zero width, which is not evidence that they are equal. The
    decision is the prior's, and the answer says the pilot measured nothing."""
    from peftbench.pilot.verdict import describe

    stuck = [100.0] * 52 + [0.0] * 28  # 65% correct: the majority class, row for row
    verdict = judge([_record("ia3", stuck, majority=65.0), _record("lora", stuck, majority=65.0)],
                    {"ia3": (0.90, 0.04), "lora": (0.97, 0.02)}, {"ia3": 1.0, "lora": 1.05}, "accuracy")
    assert not verdict.learned and verdict.baseline == 65.0
    assert verdict.decision.pick.method == "lora"  # the prior's better method, not the cheaper measured tie
    assert all(se > 0 for m, (_, se) in verdict.posterior.items() if m != verdict.best_measured)
    first = describe(verdict, "GPU-h")[0]
    assert "majority class" in first and "measured nothing" in first and first.startswith("pick: lora")
    learned = judge([_record("ia3", [100.0] * 70 + [0.0] * 10, majority=65.0), _record("lora", stuck, majority=65.0)],
                    {"ia3": (0.90, 0.04), "lora": (0.97, 0.02)}, {"ia3": 1.0, "lora": 1.05}, "accuracy")
    assert learned.learned and learned.best_measured == "ia3"
    below = judge([_record("ia3", stuck, majority=65.0), _record("lora", [0.0] * 20 + stuck[20:], majority=65.0)],
                  {"ia3": (0.90, 0.04), "lora": (0.97, 0.02)}, {"ia3": 1.0, "lora": 1.05}, "accuracy")
    lora_line = next(line for line in describe(below, "GPU-h") if line.startswith("lora:"))
    assert "a real gap, but neither beat the majority class" in lora_line


def _sweep_record(method: str, factor: float, rows: list[float], loss: float = 1.0) -> RunRecord:
    return RunRecord.from_dict({"status": "ok", "method": method, "role": "sweep", "run_id": f"{method}-{factor:g}",
                                "suite": "s", "task": "t", "hyperparameters": {"learning_rate": 1e-3 * factor},
                                "tune": {"role": "sweep", "factor": factor}, "final_train_loss": loss,
                                "metrics": {"accuracy": sum(rows) / len(rows)},
                                "eval_rows": {"metric": "accuracy", "scores": rows}})


def test_the_verdict_reads_each_candidates_best_sweep_run_on_the_validation_rows():
    """A pilot runs no retraining at the selected rate: each candidate is its best sweep run (the harness's
    selection rule: best score, a tie to the lower training loss), the pairs compared on the same validation rows,
    and the answer says the scores are a best-of-N on validation and that the test rows are left for the full run."""
    from peftbench.pilot.verdict import describe

    def right(n: int) -> list[float]:
        return [100.0] * n + [0.0] * (40 - n)

    records = [_sweep_record("lora", 0.33, right(24)), _sweep_record("lora", 1.0, right(30), loss=0.9),
               _sweep_record("lora", 3.0, right(30), loss=0.5), _sweep_record("ia3", 0.33, right(20)),
               _sweep_record("ia3", 1.0, right(22)), _sweep_record("ia3", 3.0, right(21)),
               _sweep_record("ia3", 9.0, right(18))]
    verdict = judge(records, {"lora": (1.0, 0.05), "ia3": (0.95, 0.05)}, {"lora": 1.0, "ia3": 0.8}, "accuracy")
    assert verdict.scored_on == "validation" and verdict.rows == 40
    assert verdict.measured["lora"].run_id == "lora-3" and verdict.measured["lora"].learning_rate == 3e-3
    assert verdict.measured["ia3"].run_id == "ia3-1" and verdict.measured["ia3"].rates_tried == 4
    assert verdict.differences["ia3"][0] == pytest.approx(-20.0)
    text = " ".join(describe(verdict, "GPU-h"))
    assert "on 40 validation rows" in text and "best of 3-4 learning rates" in text and "left for the full run" in text


@pytest.mark.slow
def test_pilot_end_to_end_resumes_after_a_kill(tmp_path):
    """A real pilot on MiniLM over 120 real reviews: the plan, the runs, the verdict; killed with SIGKILL during
    its runs and rerun, it repeats no finished run."""
    data = _reviews(tmp_path / "reviews.csv")
    args = ["--data", str(data), "--task", "classification", "--text-column", "review", "--label-column",
            "sentiment", "--model", "minilm", "--budget", "20m", "--candidates", "2", "--results",
            str(tmp_path / "res"), "--no-progress"]
    # Measurements after training on by default (conftest turns them off): the pilot's own runs must skip them.
    env = {**os.environ, "PEFTBENCH_CACHE": str(tmp_path / "cache"), "PEFTBENCH_POST_TRAINING": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "peftbench", "pilot", *args], cwd=tmp_path, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = tmp_path / "res" / "pilot_reviews" / "runs.jsonl"
    deadline = time.time() + 900
    while time.time() < deadline and (not runs.is_file() or len(runs.read_text().splitlines()) < 2):
        time.sleep(2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = [json.loads(line)["run_id"] for line in runs.read_text().splitlines() if line.strip()]
    assert len(before) >= 2
    done = _pilot(*args, cwd=tmp_path, env={"PEFTBENCH_CACHE": str(tmp_path / "cache"), "PEFTBENCH_POST_TRAINING": "1"},
                  timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    after = [json.loads(line)["run_id"] for line in runs.read_text().splitlines() if line.strip()]
    assert len(after) == len(set(after)) and set(before) <= set(after)
    assert "pick:" in done.stdout and "paired bootstrap" in done.stdout
    decision = json.loads((tmp_path / "res" / "pilot_reviews" / "decision.json").read_text())
    assert decision["scored_on"] == "validation" and decision["pick"] in decision["measured"]
    roles = [json.loads(line).get("role") for line in runs.read_text().splitlines() if line.strip()]
    assert set(roles) == {"sweep"}  # judged on the sweep: no run repeats a selected rate
    records = [json.loads(line) for line in runs.read_text().splitlines() if line.strip()]
    assert not any(r.get("inference") or r.get("forgetting") for r in records)  # measure_after_training=false
    page = (tmp_path / "res" / "pilot_reviews" / "report.html").read_text()
    assert 'id="full-run-command"' in page and "validation rows" in page


def test_the_pilots_decision_exports_at_the_rate_it_selected(tmp_path):
    """`pilot --export peft`: the pick's adapter config as peft reads it, trained at the pilot's selected rate."""
    from types import SimpleNamespace

    from peft import PeftConfig

    from peftbench.pilot.pilot import _export
    from peftbench.pilot.planning import PilotPlan
    from peftbench.pilot.verdict import Measured

    full_run = {"batch_size": 8, "gradient_accumulation": 2, "gradient_checkpointing": False, "gpus": 1,
                "override": "peftbench run suite=YOUR_SUITE model=minilm methods=[lora] train.dtype=fp32"}
    lora = PilotCandidate("lora", {"learning_rate": 5e-4, "r": 8, "lora_alpha": 16}, 1.0, full_run=full_run)
    plan = PilotPlan(1, {}, [lora], 8, 4, 60.0, 900.0)
    verdict = SimpleNamespace(decision=None, best_measured="lora",
                              measured={"lora": Measured("lora", 80.0, [100.0], 1.5e-3, "r1")})
    request = SimpleNamespace(model="minilm", results=tmp_path, name="pilot_x", kind="classification", export="peft")
    lines = _export(request, plan, verdict)
    folder = tmp_path / "pilot_x" / "export-peft"
    config = PeftConfig.from_pretrained(folder)
    assert config.r == 8 and "exported for peft" in lines[0]
    assert json.loads((folder / "training_args.json").read_text())["learning_rate"] == pytest.approx(1.5e-3)
