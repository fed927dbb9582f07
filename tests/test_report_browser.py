"""The reports in a real browser: Debian's headless Chromium driven by Selenium through the system chromedriver.

Each page is opened from a file:// URL, as a reader on an offline machine would. Checked: plots render with
a size, tables sort on a header click, no request leaves the page (Chrome's performance log lists every
network request), the console stays free of errors (a blocked script or CSP violation would land there),
and payloads placed in results show as text without running (alert is trapped before the page loads).
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
