"""`peftbench report`: sections, self-containment, escaping of hostile strings from results, the CLI.

Records are real: the committed `results/` when some run there succeeded, else a tiny real run made
here. The hostile suite is built from copies of those records with XSS payloads in the task name, method,
error and hyper-parameters; no metric number is made up.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT_PAYLOAD = "<script>alert(1)</script>"
IMG_PAYLOAD = '"><img src=x onerror=alert(1)>'
SECTIONS = ("summary", "tasks", "pareto", "predictions", "hardware", "failures", "provenance")
MAX_PAGE_BYTES = 2 * 2**20


def _records(path: Path) -> list[dict]:
    from peftbench.results import ResultStore

    return [r.to_dict() for r in ResultStore(path).records()]


def _record(memory: dict):
    from peftbench.record import RunRecord

    return RunRecord(run_id="r", suite="s", task="t", method="lora", status="ok", device={"type": "cpu"},
                     memory=memory)


def real_records(base: Path) -> tuple[str, list[dict]]:
    """A suite name and its real records: committed results if any run succeeded, else a tiny real run."""
    for path in sorted((REPO / "results").glob("*/runs.jsonl")):
        records = _records(path)
        if any(r["status"] == "ok" for r in records):
            return path.parent.name, records
    out = base / "tiny-run"
    runs = out / "smoke" / "runs.jsonl"
    if not runs.is_file():
        subprocess.run([sys.executable, "-m", "peftbench", "run", "suite=smoke", "tasks=[rt_sentiment]",
                        "methods=[lora,ia3]", "train.max_steps=3", "--results", str(out)],
                       check=True, capture_output=True, timeout=600)
    return "smoke", _records(runs)


def hostile_records(records: list[dict]) -> list[dict]:
    """Copies of real records carrying the payloads wherever a results file holds free text."""
    ok = [r for r in records if r["status"] == "ok"]
    first, second = copy.deepcopy(ok[0]), copy.deepcopy(ok[-1])
    first.update(task=SCRIPT_PAYLOAD, run_id="xss-1")
    first["hyperparameters"] = {**first["hyperparameters"], "note": SCRIPT_PAYLOAD, IMG_PAYLOAD: 1}
    second.update(task=SCRIPT_PAYLOAD, method=IMG_PAYLOAD, run_id="xss-2", task_kind=first["task_kind"])
    second["metrics"] = first["metrics"]  # same task, so the same metric columns; values are real ones
    failed = copy.deepcopy(ok[0])
    for key in ("metrics", "train_loss_curve", "adapter_bytes", "prediction"):
        failed.pop(key, None)
    failed.update(run_id="xss-3", status="failed", error=f"{IMG_PAYLOAD}\n{SCRIPT_PAYLOAD}",
                  traceback=SCRIPT_PAYLOAD, task=IMG_PAYLOAD)
    return [first, second, failed]


def build_reports(base: Path) -> tuple[Path, str]:
    """Reports for one real suite and the hostile suite, via the CLI; cached for the whole session."""
    out = base / "reports"
    suite, records = real_records(base)
    if not (out / "index.html").is_file():
        root = base / "results"
        for name, recs in ((suite, records), ("xss", hostile_records(records))):
            (root / name).mkdir(parents=True, exist_ok=True)
            (root / name / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        from peftbench.cli import main

        # a small budget: on a cold cache the estimator and recommender take minutes, the pages must not
        assert main(["report", "all", f"results={root}", "-o", str(out), "--estimate-budget", "8"]) == 0
    return out, suite


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> tuple[Path, str]:
    return build_reports(tmp_path_factory.getbasetemp())


class _Page(HTMLParser):
    """Tags, attributes, element ids in order, and the visible text of a page."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def ids(self) -> list[str]:
        return [a["id"] for _, a in self.tags if a.get("id")]


def _page(path: Path) -> _Page:
    return _Page(path.read_text(encoding="utf-8"))


def test_suite_page_has_every_section_in_order(reports):
    out, suite = reports
    ids = _page(out / f"{suite}.html").ids()
    positions = [ids.index(s) for s in SECTIONS]
    assert positions == sorted(positions)


def test_suite_page_shows_real_figures(reports):
    out, suite = reports
    page = _page(out / f"{suite}.html")
    records = real_records(out.parent)[1]
    ok = [r for r in records if r["status"] == "ok"]
    text = " ".join(page.text)
    for record in ok:
        assert record["run_id"] in text and record["task"] in text and record["method"] in text
    assert sum(tag == "svg" for tag, _ in page.tags) >= len({r["task"] for r in ok})
    assert any("best" in (a.get("class") or "") for _, a in page.tags)  # best values highlighted
    if all(r["device"]["type"] == "cpu" for r in records):
        assert "cpu-note" in page.ids()


@pytest.mark.parametrize("name", ["index.html", "xss.html", "SUITE"])
def test_pages_are_self_contained(reports, name):
    out, suite = reports
    path = out / (f"{suite}.html" if name == "SUITE" else name)
    page = _page(path)
    assert path.stat().st_size <= MAX_PAGE_BYTES
    for tag, attrs in page.tags:
        assert tag not in ("link", "iframe", "object", "embed", "img", "base"), tag
        for key in ("src", "href", "xlink:href", "action", "data"):
            value = (attrs.get(key) or "").strip().lower()
            assert not value.startswith(("http:", "https:", "//", "javascript:")), (tag, key, value)
            assert not value or value.startswith("#") or value.endswith(".html"), (tag, key, value)
    scripts = [attrs for tag, attrs in page.tags if tag == "script"]
    assert scripts == [{}]  # one inline script, no src
    csp = [a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]


def test_payloads_from_results_render_as_text(reports):
    out, _ = reports
    html = (out / "xss.html").read_text(encoding="utf-8")
    page = _Page(html)
    assert SCRIPT_PAYLOAD not in html and IMG_PAYLOAD not in html
    assert [t for t, _ in page.tags].count("script") == 1 and "img" not in [t for t, _ in page.tags]
    assert not [(t, k) for t, a in page.tags for k in a if k.lower().startswith("on")]
    text = "".join(page.text)
    assert SCRIPT_PAYLOAD in text and IMG_PAYLOAD in text  # shown to the reader, as text


def test_estimator_and_recommender_sections_degrade_to_a_note(reports):
    """Each section shows its answer, or — only because the 8 s budget ran out — the budget note; never the
    text a crashed estimator, recommender or worker produces (an exception name, a traceback)."""
    out, suite = reports
    html = (out / f"{suite}.html").read_text(encoding="utf-8")
    page = _Page(html)
    text = " ".join(page.text)
    assert "Traceback" not in html and "worker failed" not in text
    crashes = re.findall(r"\b[A-Z]\w*(?:Error|Exception)\b", text)
    assert not crashes, crashes
    budget = "left out (the time budget of 8 s ran out)"
    try:
        import peftbench.estimate  # noqa: F401
        from peftbench.estimate import estimate  # noqa: F401
    except ImportError:
        assert "estimator not available" in text
    else:
        if 'id="hardware-table"' not in html:
            assert f"task × method estimates {budget}" in text
        # every estimated row has its verdicts (an error row spans the profile columns instead)
        hardware = html.split('<section id="hardware">')[1].split("</section>")[0]
        assert "not computed" not in text and "<td colspan=" not in hardware
    try:
        from peftbench.recommend import recommend  # noqa: F401
    except ImportError:
        assert "recommender not available" in text
    else:
        notes = re.findall(r"recommender: (.*?)</p>", html)
        assert 'id="picks"' in html or notes
        # A task without a pick says the budget ran out, or the engine's own reason (for example that no
        # method has the evidence to be first) -- an answer, not a crash.
        for note in notes:
            for part in re.split(r"; (?=[\w-]+: )", note):
                reason = part.partition(": ")[2]
                assert reason == budget or reason.startswith("no method can be recommended: "), note


def test_index_links_every_suite(reports):
    out, suite = reports
    hrefs = {a.get("href") for t, a in _page(out / "index.html").tags if t == "a"}
    assert {f"./{suite}.html", "./xss.html"} <= hrefs


def test_single_suite_and_bad_input(reports, cli, tmp_path):
    out, suite = reports
    root = out.parent / "results"
    code, stdout, _ = cli("report", f"suite={suite}", f"results={root}", "-o", str(tmp_path / "one.html"),
                          "--no-estimates")
    assert code == 0 and (tmp_path / "one.html").is_file() and "KiB" in stdout
    code, _, err = cli("report", "suite=no_such_suite", f"results={root}")
    assert code == 2 and err.count("\n") == 1 and "no results" in err
    code, _, err = cli("report", "flavour=mild")
    assert code == 2 and "expected suite=NAME" in err


def test_pareto_front_and_cpu_measurement():
    from peftbench.report.plots import pareto_front
    from peftbench.report.runs import measured_for_prediction

    assert pareto_front([(1, 1), (2, 3), (3, 2), (4, 4), (2, 0.5)]) == [(1, 1), (2, 3), (4, 4)]
    memory = {"peak_rss_train_bytes": 900, "rss_before_train_bytes": 600}
    assert measured_for_prediction(_record(memory))[0] == 300
    memory["rss_before_load_bytes"] = 400
    assert measured_for_prediction(_record(memory))[0] == 500


def test_answers_are_computed_without_a_default_time_limit_and_show_progress(capsys):
    """The report computes its estimates and picks by default (no silent cut-off), with a progress bar; a
    budget the user sets still stops the child and says so."""
    from peftbench.report.build import DEFAULT_BUDGET_S, Options
    from peftbench.report.cache import Deadline, DerivedCache
    from peftbench.report.predictions import _compute

    assert DEFAULT_BUDGET_S is None and Options().deadline.remaining() is None
    cache = DerivedCache(None)
    jobs = {"a": {"kind": "no_such_kind"}, "b": {"kind": "no_such_kind"}}
    assert _compute(jobs, cache, Deadline(None), "picks", progress=True) == ""
    assert all("error" in cache.get(key) for key in jobs)  # every job answered (here: with its error)
    err = capsys.readouterr().err
    assert "picks" in err and "2/2" in err
    assert _compute({"c": {"kind": "no_such_kind"}}, DerivedCache(None), Deadline(0.0)).startswith("the time budget")


def _summary(quality: float, memory_mib: float, adapter: float, seconds: float = 10.0) -> dict:
    return {"quality": quality, "quality_std": 1.0, "peak_memory_bytes": memory_mib * 2**20, "train_seconds": seconds,
            "adapter_bytes": adapter, "inference_overhead": float("nan")}


def test_pareto_panels_label_the_front_and_the_pick_only_and_title_every_point():
    """User text with `$` stays literal, log ticks are typeset (no raw mathtext), and of six configurations
    only the front and the recommender's pick carry a label; all six carry a hover title."""
    from peftbench.report.pareto import pareto_panels

    summary = {"cheap": _summary(50, 100, 1e4), "mid $x$": _summary(60, 200, 1e6), "best": _summary(70, 400, 1e8),
               "dominated": _summary(40, 300, 1e7), "worse": _summary(45, 350, 1e7), "picked": _summary(55, 380, 1e5)}
    memory, _, adapter = pareto_panels(summary, r"acc $\frac{x$", "p", pick="picked", task="t")
    labels = re.findall(r'id="p-memory-label-\d+">\s*<text[^>]*>([^<]*)<', memory)
    assert sorted(labels) == ["best", "cheap", "mid $x$", "picked"]
    assert len(re.findall(r'id="p-memory-point-\d+"><title>', memory)) == 6
    assert r"acc $\frac{x$" in memory and "mathdefault" not in adapter
    ticks = re.findall(r'id="p-adapter-xtick_\d+">(.*?)</g>\s*</g>\s*</g>', adapter, re.S)
    assert ticks and all("$" not in tick for tick in ticks)


def _measured(state: str, best_method: str = "adalora") -> dict:
    return {"task": "part", "anchor": "task-0", "kind": "classification", "primary": "accuracy", "model": "minilm",
            "best_config": best_method, "best_method": best_method, "state": state, "tied": ["ia3", "full"],
            "sdd": 26.7, "note": "no method separates: methods span 18.8 points, the smallest detectable difference "
            "is 22.3" if state == "none" else "", "quality": "59.5", "relative": "136.9%"}


PICK = {"method": "full", "hyperparameters": {"learning_rate": 2e-05}, "gpu": "16GB (NVIDIA T4 16GB, the most "
        "conservative card)", "separates": True, "provisional": False, "model_params": 22_718_221,
        "decision": {"pick": "full", "best_quality": "full", "best_value": None, "ties": ["full"],
                     "cost_unit": "GPU-h", "value_margin_points": 2.0},
        "pick": {"method": "full", "predicted": 1.0, "interval": [0.94, 1.06], "gpu_hours": 0.0004, "may_lead": True,
                 "near_comparisons": 11, "near_sources": 4},
        "alternatives": {}, "higher_without_evidence": ["ia3", "adalora"],
        "train": {"train_examples": 324, "epochs": 3.0, "seq_len": 128}}


def test_verdict_says_what_to_use_how_sure_what_it_costs_and_why_the_measured_best_differs():
    from peftbench.report.verdict import gpu_cost_text, task_verdict

    verdict = task_verdict(_measured("tied"), PICK, "", "on any GPU class from 16GB up (t4 to h200)", on_cpu=True)
    assert verdict["method"] == "full fine-tuning" and verdict["settings"] == "lr 2e-05"
    assert verdict["sure_label"] == "separates" and "94%–106%" in verdict["sure_text"]
    assert "(IA)³, AdaLoRA" in verdict["sure_text"]  # predicted higher, without the evidence to lead
    cost, measured = verdict["cost_text"], verdict["measured_text"]
    assert cost.startswith("under one GPU-minute") and "3 epochs of 324 examples" in cost
    # the measured best differs and is inside the noise: shown as noise, with why the pick is followed
    assert verdict["measured_noise"] and "59.5 ≈" in measured
    assert "23M-parameter CPU run" in measured and "11 comparisons from 4 sources" in measured
    same = task_verdict(_measured("separates", "full"), PICK, "", "", on_cpu=False)
    assert same["measured_text"].startswith("Also the best measured") and not same["measured_noise"]
    none = task_verdict(_measured("none"), None, "left out (the time budget of 8 s ran out)", "", on_cpu=True)
    assert none["action"] == "measured" and none["method"] == "" and none["sure_label"] == "no method separates"
    assert "time budget" in none["measured_text"]
    assert gpu_cost_text(12.345) == "12.3 GPU-hours" and gpu_cost_text(0.5) == "30 GPU-minutes (0.5 GPU-h)"


def test_a_budget_that_runs_out_mid_trace_ends_the_report_work_on_time(tmp_path, monkeypatch):
    """The report's worker traces in a pool of processes that inherit its stdout. When the budget ran out, killing
    the worker alone left them holding that pipe, and the report waited on it forever (seen in a test run on a
    loaded machine). A stand-in worker that leaves such a child: the work ends at the budget, and says why."""
    import subprocess
    import threading

    from peftbench.report import predictions
    from peftbench.report.cache import Deadline, DerivedCache

    worker = tmp_path / "worker.sh"
    worker.write_text("#!/bin/sh\nsleep 121.5 &\nsleep 121.5\n")  # the child keeps the worker's stdout open
    worker.chmod(0o755)
    monkeypatch.setattr(predictions.sys, "executable", str(worker))
    said: list[str] = []
    work = threading.Thread(target=lambda: said.append(predictions._compute({"k": {}}, DerivedCache(None),
                                                                             Deadline(2.0))), daemon=True)
    work.start()
    work.join(timeout=30)
    subprocess.run(["pkill", "-f", "sleep 121.5"], check=False)  # what the old code left behind
    assert not work.is_alive(), "the report's work still waits on its worker's pipe 28 s after the budget"
    assert "time budget of 2 s ran out" in said[0]
