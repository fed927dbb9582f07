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

    return ResultStore(path).records()


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
    assert measured_for_prediction({"device": {"type": "cpu"}, "memory": memory})[0] == 300
    memory["rss_before_load_bytes"] = 400
    assert measured_for_prediction({"device": {"type": "cpu"}, "memory": memory})[0] == 500


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
