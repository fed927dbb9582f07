"""The pilot's report page: the decision on the first screen, every candidate with its interval, the full run's
command, curves as inline SVG, nothing fetched from elsewhere; rendered from a pilot folder's own files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from peftbench.pilot.pilot import _full_run_line, decision_document
from peftbench.pilot.verdict import describe, judge
from peftbench.report.pilot_page import is_pilot, pilot_context, write_pilot_report
from peftbench.report.verdict import display
from peftbench.results import ResultStore

REAL_PILOT = Path(__file__).parent / "data" / "pilot_reviews"


def _scores(right: int, rows: int = 40) -> list[float]:
    return [100.0] * right + [0.0] * (rows - right)


def _record(method: str, rate: float, role: str, scores: list[float], index: int, factor: float = 1.0) -> dict:
    return {"run_id": f"{method}-{role}-{rate:g}", "status": "ok", "suite": "pilot_reviews", "task": "reviews",
            "method": method, "model": "minilm", "seed": 0, "role": role, "tune": {"role": role, "factor": factor},
            "hyperparameters": {"learning_rate": rate}, "train_config": {"learning_rate": rate, "max_steps": 4},
            "metrics": {"accuracy": sum(scores) / len(scores)},
            "eval_rows": {"metric": "accuracy", "scores": scores},
            "train_loss_curve": [[s, 1.1 - 0.1 * s - 0.01 * index] for s in range(4)],
            "train_seconds": 20.0, "wall_seconds": 30.0, "device": {"type": "cpu"},
            "finished_at": f"2026-12-07T10:{index:02d}:00Z"}


def _plan_candidate(method: str, rate: float, hours: float) -> dict:
    return {"method": method, "hyperparameters": {"learning_rate": rate}, "step_seconds": 1.0, "run_seconds": 0.0,
            "full_run_gpu_hours": hours, "prior": [1.0, 0.05],
            "full_run": {"batch_size": 16, "gradient_accumulation": 1, "gradient_checkpointing": False, "gpus": 1}}


def make_pilot(folder: Path, with_decision: bool = True, confirmed: bool = False) -> Path:
    """A pilot folder as `peftbench pilot` leaves it: plan, the sweep's records, decision.json written from the
    pilot's own verdict functions; lora clearly ahead of ia3 on the same 40 validation rows. `confirmed`: each
    candidate's selected rate also run and scored on 40 test rows (a `run ... tune=lr` of the pilot's suite)."""
    folder.mkdir(parents=True)
    plan = {"version": 1, "request": {"model": "minilm", "task": "classification", "device": "cpu", "gpu": None,
                                      "budget_seconds": 900.0},
            "candidates": [_plan_candidate("lora", 1e-3, 0.5), _plan_candidate("ia3", 3e-3, 0.3)],
            "steps": 4, "batch_size": 4, "seconds": 600.0, "budget_seconds": 900.0, "notes": ["a calibration note"],
            "jobs": 2}
    (folder / "plan.json").write_text(json.dumps(plan))
    store = ResultStore(folder / "runs.jsonl")
    index = 0
    for method, rate, right in (("lora", 1e-3, 34), ("ia3", 3e-3, 20)):
        for factor, val in ((0.33, right - 6), (1.0, right), (3.0, right - 3)):
            store.append(_record(method, float(f"{rate * factor:.6g}"), "sweep", _scores(val), index, factor))
            index += 1
        if confirmed:
            store.append(_record(method, rate, "selected", _scores(right - 2), index))
            index += 1
    if with_decision:
        verdict = judge(store.records(), {"lora": (1.0, 0.05), "ia3": (0.95, 0.05)}, {"lora": 0.5, "ia3": 0.3},
                        "accuracy")
        lines = describe(verdict, "CPU-h (this machine)")
        lines.append(_full_run_line(verdict, SimpleNamespace(batch_size=4), folder / "suite.yaml",
                                    SimpleNamespace(gpu=None), 160))
        (folder / "decision.json").write_text(json.dumps(decision_document(plan, lines, verdict), default=str))
    return folder


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> str:
    folder = make_pilot(tmp_path_factory.mktemp("pilot") / "pilot_reviews")
    return write_pilot_report(folder).read_text()


def _section(html: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}".*?</section>', html, re.S)
    assert match, anchor
    return match.group(0)


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_decision_comes_first_with_whether_the_gap_is_real(page):
    first = page.index("<section")
    assert page.index('<section id="verdict"') == first
    verdict = _text(_section(page, "verdict"))
    assert "Use LoRA" in verdict and "a real gap" in verdict
    assert "80% paired bootstrap" in verdict and "probability that LoRA is truly ahead" in verdict
    assert "Runner-up (IA)³ would have given 50.0 accuracy" in verdict


def test_the_full_run_command_settings_and_cost_are_on_the_page(page):
    verdict = _text(_section(page, "verdict"))
    command = re.search(r'<pre id="full-run-command">(.*?)</pre>', page, re.S).group(1)
    assert command.startswith("peftbench run suite=") and "methods=[lora]" in command
    assert "methods.lora.learning_rate=0.001" in command and "(the pilot" not in command
    assert "batch size 16" in verdict and "learning rate 0.001 (selected by the pilot)" in verdict
    assert "0.5 CPU-h (this machine) for the full run" in verdict


def test_every_candidate_appears_with_its_interval_and_rates(page):
    rows = dict(re.findall(r'<tr data-method="(\w+)">(.*?)</tr>', page, re.S))
    assert set(rows) == {"lora", "ia3"}
    for method, score in (("lora", "85.0"), ("ia3", "50.0")):
        cells = _text(rows[method])
        assert score in cells and re.search(r"\d+\.\d to \d+\.\d", cells), cells
        assert "3 runs" in cells
    assert "0.001: 85.0" in _text(rows["lora"]) and "0.003: 50.0" in _text(rows["ia3"])


def test_the_page_says_which_rows_the_scores_come_from(page, tmp_path):
    """A pilot judges on the sweep's validation rows (best rate each, optimistic alike) and leaves the test rows to
    the full run; once the suite's selected rates have run on the test rows, the page reads those instead."""
    verdict = _text(_section(page, "verdict"))
    assert "accuracy on 40 validation rows" in verdict and "test rows" in verdict and "full run" in verdict
    assert "best of 3 learning rates on the same validation rows" in verdict
    assert "Validation accuracy" in _text(_section(page, "candidates"))
    confirmed = write_pilot_report(make_pilot(tmp_path / "pilot_reviews", confirmed=True)).read_text()
    verdict = _text(_section(confirmed, "verdict"))
    assert "accuracy on 40 held-out test rows" in verdict and "best of" not in verdict
    row = _text(re.search(r'<tr data-method="lora">(.*?)</tr>', confirmed, re.S).group(1))
    assert "80.0" in row and "4 runs" in row  # the selected run's 32 of 40 test rows, not the sweep's 34


def test_the_curves_are_inline_svg_and_nothing_is_fetched(page):
    assert len(re.findall(r'<svg role="img"', page)) == 2
    assert 'aria-label="validation accuracy by learning rate' in page and "training loss per step" in page
    assert not re.search(r'https?://', page), re.search(r'.{40}https?://.{40}', page).group(0)
    assert not re.search(r'<(link|img|iframe)\b|\bsrc=', page)


def test_the_plan_and_what_the_pilot_cost(page):
    cost = _text(_section(page, "cost"))
    assert "4 steps of batch 4" in cost and "15.0 min" in cost and "6 runs" in cost and "a calibration note" in cost
    assert "judged on the validation rows" in cost


def test_an_unfinished_pilot_gets_a_page_without_a_decision(tmp_path):
    folder = make_pilot(tmp_path / "pilot_reviews", with_decision=False)
    context = pilot_context(folder)
    assert context["verdict"] is None and len(context["candidates"]) == 2
    assert 'id="no-decision"' in write_pilot_report(folder).read_text()


def test_a_cheaper_pick_within_noise_names_the_measured_best_as_runner_up(tmp_path):
    """The decision may pick a cheaper candidate within noise of the measured best: the page says so, and the
    runner-up is the measured best with what it would have given."""
    folder = make_pilot(tmp_path / "pilot_reviews")
    decision = json.loads((folder / "decision.json").read_text())
    decision.update(pick="ia3", differences={"lora": [0, 0, 0], "ia3": [-1.0, -3.0, 1.0]},
                    posterior={"lora": [0, 0], "ia3": [-0.01, 0.02]})
    (folder / "decision.json").write_text(json.dumps(decision))
    verdict = _text(_section(write_pilot_report(folder).read_text(), "verdict"))
    assert "Use (IA)³" in verdict and "within noise" in verdict and "within that noise and cheaper" in verdict
    assert "LoRA leads (IA)³ by 1.0 accuracy points" in verdict and "69% probability that LoRA" in verdict
    assert "Runner-up LoRA would have given 85.0 accuracy" in verdict


def test_the_pilot_command_prints_where_its_report_is(tmp_path, monkeypatch, capsys):
    """`peftbench pilot` ends by writing the page into the pilot's folder and printing its path."""
    import peftbench.pilot.pilot as pilot_module
    import peftbench.pilot.request as request_module
    from peftbench.cli.pilot import main

    folder = make_pilot(tmp_path / "pilot_reviews")
    request = SimpleNamespace(results=tmp_path, name="pilot_reviews")
    outcome = SimpleNamespace(plan=SimpleNamespace(describe=lambda: "a plan"), lines=["pick: lora"],
                              suite_path=folder / "suite.yaml")
    monkeypatch.setattr(request_module, "build_request", lambda args: request)
    monkeypatch.setattr(pilot_module, "run", lambda request, show_progress: outcome)
    assert main(SimpleNamespace(no_progress=True)) == 0
    assert f"Report: {folder / 'report.html'}" in capsys.readouterr().out
    assert 'id="full-run-command"' in (folder / "report.html").read_text()


def test_report_on_a_pilot_folder_writes_the_pilot_page(tmp_path, capsys):
    from peftbench.cli import main

    folder = make_pilot(tmp_path / "res" / "pilot_reviews")
    assert is_pilot(folder)
    out = tmp_path / "page.html"
    assert main(["report", "suite=pilot_reviews", f"results={tmp_path / 'res'}", "-o", str(out)]) == 0
    assert 'id="full-run-command"' in out.read_text() and str(out) in capsys.readouterr().out


def test_a_real_pilots_page(tmp_path):
    """Rendered from a real pilot's own output (`tests/data/pilot_reviews`: `peftbench pilot` on 120 of the shipped
    drug reviews, MiniLM, a 12-minute CPU budget; its records, plan and decision as written). Both candidates
    scored the same on its 24 test rows: the page must say so, not crown a winner."""
    folder = tmp_path / "pilot_reviews"
    shutil.copytree(REAL_PILOT, folder)
    page = write_pilot_report(folder).read_text()
    decision = json.loads((folder / "decision.json").read_text())
    verdict = _text(_section(page, "verdict"))
    assert f"Use {display(decision['pick'])}" in verdict and "within noise" in verdict and "a real gap" not in verdict
    assert "peftbench run suite=" in verdict and "Runner-up full fine-tuning would have given 58.3" in verdict
    for cand in decision["plan"]["candidates"]:
        row = _text(re.search(rf'<tr data-method="{cand["method"]}">(.*?)</tr>', page, re.S).group(1))
        assert "58.3" in row and "45.8 to 70.8" in row and "6 runs" in row
    assert page.count('<svg role="img"') == 2 and not re.search(r"https?://", page)


@pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                    reason="needs Debian's chromium and chromium-driver")
def test_the_decision_is_on_the_first_screen_in_a_browser(tmp_path):
    """What a team lead sees without scrolling (1400x900): the pick, whether the gap is real, the command."""
    webdriver = pytest.importorskip("selenium.webdriver")
    page = write_pilot_report(make_pilot(tmp_path / "pilot_reviews"))
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_window_size(1400, 900)
        driver.get(page.as_uri())
        height = driver.execute_script("return window.innerHeight")
        for selector in ("#verdict .use", "#verdict .tag", "#full-run-command"):
            box = driver.execute_script("const r = document.querySelector(arguments[0]).getBoundingClientRect();"
                                        "return [r.top, r.bottom, r.width];", selector)
            assert box[2] > 0 and box[1] <= height, (selector, box, height)
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        driver.quit()
