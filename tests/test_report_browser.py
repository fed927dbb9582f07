"""The reports in a real browser: Debian's headless Chromium driven by Selenium through the system chromedriver.

Each page is opened from a file:// URL, as a reader on an offline machine would. Checked: plots render with
a size, tables sort on a header click, no request leaves the page (Chrome's performance log lists every
network request), the console stays free of errors (a blocked script or CSP violation would land there),
and payloads placed in results show as text without running (alert is trapped before the page loads).
And what a reader sees: every task's verdict on the first screen of a 1400x900 window, numbers inside the
noise not shown as winners, tick labels typeset (no raw mathtext), Pareto-front labels that do not overlap,
and a hover title on every point.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_report import IMG_PAYLOAD, REPO, SCRIPT_PAYLOAD, build_reports

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
                                       "chromium-driver); CI installs them")
TRAP = ("window.__alerts = [];"
        "window.alert = window.confirm = window.prompt = function (m) { window.__alerts.push(String(m)); };")


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": TRAP})
    yield driver
    driver.quit()


COMMITTED = sorted((REPO / "reports").glob("*.html"))
SUITE_PAGES = ["generated:suite"] + [f"committed:{p.name}" for p in COMMITTED if p.name != "index.html"]
FIRST_SCREEN = (1400, 900)


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    """Freshly generated pages (a real suite, the hostile suite, the index) and the committed reports."""
    out, suite = build_reports(tmp_path_factory.getbasetemp())
    found = {"generated:index": out / "index.html", "generated:suite": out / f"{suite}.html",
             "generated:xss": out / "xss.html"}
    found.update({f"committed:{p.name}": p for p in sorted((REPO / "reports").glob("*.html"))})
    return found


def _open(driver, path: Path) -> dict:
    """Load a page and return what happened: requests made, console entries, trapped dialogs."""
    driver.get_log("performance")  # drop entries of earlier pages
    driver.get_log("browser")
    driver.get(path.resolve().as_uri())
    driver.execute_script("return document.readyState")
    requests = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requests.append(message["params"]["request"]["url"])
    console = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    return {"requests": requests, "console": console, "alerts": driver.execute_script("return window.__alerts")}


def test_pages_load_offline_without_errors(browser, pages):
    for name, path in pages.items():
        seen = _open(browser, path)
        assert seen["requests"] == [path.resolve().as_uri()], (name, seen["requests"])
        assert seen["console"] == [], (name, seen["console"])
        assert seen["alerts"] == [], name


def test_plots_render_with_a_size(browser, pages):
    for name, path in pages.items():
        if name.endswith("index") or name.endswith("index.html"):
            continue
        _open(browser, path)
        sizes = browser.execute_script(
            "return Array.from(document.querySelectorAll('svg.plot')).map(function (s) {"
            " var r = s.getBoundingClientRect(); return [r.width, r.height, s.querySelectorAll('path').length]; })")
        assert sizes, name
        assert all(w > 100 and h > 100 and paths > 0 for w, h, paths in sizes), (name, sizes)


def test_tables_sort_on_header_click(browser, pages):
    from selenium.webdriver.common.by import By

    for name in ("generated:suite", "generated:index"):
        _open(browser, pages[name])
        for table in browser.find_elements(By.CSS_SELECTOR, "table.sortable")[:2]:
            headers = table.find_elements(By.CSS_SELECTOR, "thead th")
            for index, header in enumerate(headers):
                header.click()
                assert _ordered(browser, table, index, 1), (name, header.text, "ascending")
                header.click()
                assert header.get_attribute("aria-sort") == "descending"
                assert _ordered(browser, table, index, -1), (name, header.text, "descending")


ORDERED_JS = """
var rows = Array.from(arguments[0].tBodies[0].rows), col = arguments[1], direction = arguments[2];
var values = rows.map(function (r) { var c = r.cells[col], s = c.getAttribute('data-sort');
  return s === null ? c.textContent.trim() : (s === '' ? null : parseFloat(s)); });
var present = values.filter(function (v) { return v !== null; });
if (values.slice(present.length).some(function (v) { return v !== null; })) return false;  // blanks last
for (var i = 1; i < present.length; i++) {
  var a = present[i - 1], b = present[i];
  var order = (typeof a === 'number' && typeof b === 'number') ? a - b : String(a).localeCompare(String(b));
  if (direction * order > 0) return false;
}
return true;
"""


def _ordered(driver, table, index: int, direction: int) -> bool:
    """Whether the column reads in order (numbers by value, text by the browser's collation), blanks last."""
    return driver.execute_script(ORDERED_JS, table, index, direction)


def test_payloads_show_as_text_and_never_run(browser, pages):
    seen = _open(browser, pages["generated:xss"])
    assert seen["alerts"] == [] and seen["console"] == []
    state = browser.execute_script(
        "return {scripts: document.scripts.length, imgs: document.images.length, text: document.body.innerText,"
        " handlers: Array.from(document.querySelectorAll('*')).filter(function (e) {"
        "   return Array.from(e.attributes).some(function (a) { return a.name.startsWith('on'); }); }).length}")
    assert state["scripts"] == 1 and state["imgs"] == 0 and state["handlers"] == 0
    assert SCRIPT_PAYLOAD in state["text"] and IMG_PAYLOAD in state["text"]


@pytest.fixture
def suite_page(request) -> Path:
    """One suite page by name; a committed page is read as it is, without generating any."""
    name = request.param
    if name.startswith("committed:"):
        return REPO / "reports" / name.removeprefix("committed:")
    return request.getfixturevalue("pages")[name]


def _first_screen(driver, path: Path) -> None:
    """The page as a 1400x900 window shows it before any scrolling."""
    width, height = FIRST_SCREEN
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    seen = _open(driver, path)
    assert seen["console"] == [], seen["console"]
    driver.execute_script("window.scrollTo(0, 0)")


VERDICTS_JS = """
var tasks = Array.from(document.querySelectorAll('#tasks h3[id^="task-"]')).map(function (h) {
  return h.firstChild.textContent.trim(); });
return tasks.map(function (task) {
  var card = Array.from(document.querySelectorAll('.verdict')).filter(function (v) {
    return v.getAttribute('data-task') === task; })[0];
  if (!card) return {task: task, found: false};
  var r = card.getBoundingClientRect();
  return {task: task, found: true, top: r.top, bottom: r.bottom, left: r.left, right: r.right,
          text: card.innerText};
});
"""


@pytest.mark.parametrize("suite_page", SUITE_PAGES, indirect=True)
def test_first_screen_holds_every_tasks_verdict(browser, suite_page):
    """A team lead reads one verdict per task without scrolling: what to use (or that nothing can be told
    apart), how sure, and what it costs."""
    try:
        _first_screen(browser, suite_page)
        cards = browser.execute_script(VERDICTS_JS)
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert cards, "no task on the page"
    width, height = FIRST_SCREEN
    for card in cards:
        assert card["found"], f"no verdict for {card['task']}"
        assert 0 <= card["top"] and card["bottom"] <= height and card["right"] <= width, card
        assert card["task"] in card["text"] and "How sure" in card["text"] and "Cost" in card["text"], card
        assert any(word in card["text"] for word in ("Use ", "measured best", "No method to recommend")), card


NOISE_JS = """
function taskTable(anchor) {  // the comparison table under the task's heading
  var node = document.getElementById(anchor);
  while (node && !(node.querySelector && node.querySelector('table.task-table'))) node = node.nextElementSibling;
  return node ? node.querySelector('table.task-table') : null;
}
return Array.from(document.querySelectorAll('#summary-table tbody tr')).map(function (row) {
  var table = taskTable(row.cells[0].querySelector('a').getAttribute('href').slice(1));
  var quality = Array.from(table.tHead.rows[0].cells).map(function (th, i) {
    return th.hasAttribute('title') ? i : -1; }).filter(function (i) { return i >= 0; });
  var highlighted = Array.from(table.tBodies[0].rows).filter(function (r) {
    return quality.some(function (i) { return r.cells[i].classList.contains('best'); }); }).length;
  return {task: row.cells[0].innerText, best: row.cells[3].innerText, highlighted: highlighted,
          score: [row.cells[4], row.cells[5]].map(function (c) {
            return {text: c.innerText.trim(), noise: c.classList.contains('noise')}; })};
});
"""


@pytest.mark.parametrize("suite_page", SUITE_PAGES, indirect=True)
def test_numbers_within_noise_are_not_shown_as_winners(browser, suite_page):
    """Where the page says the best's lead is inside the task's noise (or that no method separates), its score
    and its share of full fine-tuning are marked as noise (grey, ≈) or left out, and the task's own table
    highlights no quality value as the best: never shown as a result."""
    _open(browser, suite_page)
    for row in browser.execute_script(NOISE_JS):
        if "smallest detectable difference" in row["best"] or "no method separates" in row["best"]:
            for cell in row["score"]:
                assert cell["noise"] or cell["text"] in ("—", ""), (row["task"], cell)
            assert row["highlighted"] == 0, row["task"]


PLOT_TEXT_JS = """
var figures = Array.from(document.querySelectorAll('figure[id^="pareto-"]'));
return {
  ticks: Array.from(document.querySelectorAll('svg.plot g[id*="tick_"] text')).map(function (t) {
    return t.textContent; }),
  figures: figures.map(function (figure) {
    return {id: figure.id,
            points: figure.querySelectorAll('g[id*="-point-"]').length,
            titled: figure.querySelectorAll('g[id*="-point-"] > title').length,
            panels: Array.from(figure.querySelectorAll('svg.plot')).map(function (svg) {
              return Array.from(svg.querySelectorAll('g[id*="-label-"] text')).map(function (t) {
                var r = t.getBoundingClientRect();
                return {text: t.textContent, left: r.left, right: r.right, top: r.top, bottom: r.bottom}; });
            })};
  })};
"""


def _overlap(a: dict, b: dict, slack: float = 0.5) -> bool:
    return (min(a["right"], b["right"]) - max(a["left"], b["left"]) > slack
            and min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > slack)


@pytest.mark.parametrize("suite_page", SUITE_PAGES, indirect=True)
def test_plots_are_legible(browser, suite_page):
    """Tick labels are typeset, not raw mathtext; each task's Pareto plots label their front, no two labels
    overlap, and every point names itself on hover (an SVG title)."""
    _open(browser, suite_page)
    seen = browser.execute_script(PLOT_TEXT_JS)
    assert seen["ticks"] and seen["figures"]
    raw = [t for t in seen["ticks"] if "$" in t or "mathdefault" in t]
    assert not raw, raw[:5]
    for figure in seen["figures"]:
        labels = [label for panel in figure["panels"] for label in panel]
        assert labels, f"{figure['id']}: no point labelled"
        assert figure["points"] and figure["titled"] == figure["points"], figure["id"]
        for panel in figure["panels"]:
            clashes = [(a["text"], b["text"]) for i, a in enumerate(panel) for b in panel[i + 1:] if _overlap(a, b)]
            assert not clashes, (figure["id"], clashes)
