"""`peftbench report suite=NAME [results=PATH] [-o FILE]` and `peftbench report all [-o DIR]`: HTML reports."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from peftbench.errors import UserError, shown


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="self-contained HTML comparison report per suite")
    parser.add_argument("selectors", nargs="+", metavar="SELECTOR",
                        help="suite=NAME for one suite, or all for every suite with results (plus an index); "
                             "optionally results=PATH (a results root, suite folder or runs.jsonl). A pilot's "
                             "folder (peftbench pilot) gets the pilot's page: its decision, candidates and curves")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="output file for one suite (default ./reports/NAME.html), or folder for all (./reports/)")
    parser.add_argument("--results", type=Path, default=None,
                        help="results root (default: $PEFTBENCH_RESULTS, else ./results; where neither holds the "
                             "suite, the reference results shipped with peftbench)")
    parser.add_argument("--reference", action="store_true", help="report the reference results shipped with peftbench")
    parser.add_argument("--no-estimates", action="store_true",
                        help="leave out the hardware matrix and recommender pick (faster, no estimator needed)")
    parser.add_argument("--estimate-budget", type=float, default=None, metavar="SECONDS",
                        help="cap on the time for uncached estimator/recommender answers (default and 0: no limit; "
                             "what is left out is said on the page)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar while answers are computed")
    parser.add_argument("--recompute", action="store_true",
                        help="ignore the stored estimator/recommender answers (reports/derived-cache.json)")
    parser.set_defaults(func=main)


def parse_selectors(selectors: list[str]) -> tuple[str, Path | None]:
    """`suite=NAME` or `all`, with an optional `results=PATH`. NAME names the page written under reports/, so
    it is a plain identifier (nothing like `../../x`)."""
    from peftbench.paths import check_name

    suite, results = None, None
    for item in selectors:
        key, eq, value = item.partition("=")
        if item == "all":
            suite = "all"
        elif key == "suite" and eq:
            suite = value if value == "all" else check_name(value, "suite")
        elif key == "results" and eq and value:
            results = Path(value)
        else:
            raise UserError(f"expected suite=NAME, all or results=PATH, got {shown(item)}")
    if suite is None:
        raise UserError("say which suite: suite=NAME, or all")
    return suite, results


def suite_file(suite: str, results: Path) -> Path:
    """The runs file of one suite; `results` may be the root, a suite folder or the runs.jsonl itself."""
    from peftbench.paths import is_file
    from peftbench.results import RUNS_FILE

    for candidate in (results / suite / RUNS_FILE, results / RUNS_FILE, results):
        if is_file(candidate):
            return candidate
    raise UserError(f"no results for suite '{suite}' under {results}")


def _options(args: argparse.Namespace, folder: Path):
    from peftbench.report import Options
    from peftbench.report.build import DEFAULT_BUDGET_S
    from peftbench.report.cache import CACHE_FILE, Deadline, DerivedCache

    budget = DEFAULT_BUDGET_S if args.estimate_budget is None else args.estimate_budget
    return Options(estimates=not args.no_estimates, cache=DerivedCache(folder / CACHE_FILE, use=not args.recompute),
                   deadline=Deadline(budget or None), progress=not args.no_progress)


def main(args: argparse.Namespace) -> int:
    from peftbench.paths import check_output_dir
    from peftbench.report import write_index, write_suite_report
    from peftbench.results import choose_result_set, suite_result_files
    from peftbench.validation import number

    if args.estimate_budget is not None:  # NaN passes every comparison: a finite number, said before any work
        number(args.estimate_budget, "--estimate-budget (seconds)", low=0.0, high=1e9)
    suite, results = parse_selectors(args.selectors)
    default_dir = Path.cwd() / "reports"
    output = args.output or (default_dir / f"{suite}.html" if suite != "all" else default_dir)
    if suite != "all":  # the page's folder is created where missing; it must be creatable and writable
        check_page(output)
    elif output.suffix == ".html":
        raise UserError("with 'all', -o names a folder (one page per suite plus index.html)")
    else:
        check_output_dir(output)
    result_set = choose_result_set(suite, results or args.results, args.reference)
    results = result_set.root
    print(f"Reading {result_set.describe()}.")
    if suite != "all":
        from peftbench.report.pilot_page import is_pilot, write_pilot_report

        runs_file = suite_file(suite, results)
        if is_pilot(runs_file.parent):  # a pilot's folder: its decision page, not the per-task suite page
            print(f"{suite}: {write_pilot_report(runs_file.parent, output)} (the pilot's page)")
            return 0
        options = _options(args, output.parent)
        _say(write_suite_report(suite, runs_file, output, options))
        if options.estimates:
            options.cache.save(prune=False)  # other suites' answers in the same folder stay
        return 0
    from peftbench.results import ResultStore

    files = [path for path in suite_result_files(results) if ResultStore(path).records()]
    if not files:
        raise UserError(f"no results under {results} (expected {results}/<suite>/runs.jsonl)")
    folder = output
    pages = {path: check_page(folder / page_name(path.parent.name)) for path in files}
    check_page(folder / "index.html")
    options = _options(args, folder)
    done = [write_suite_report(path.parent.name, path, page, options) for path, page in pages.items()]
    for written in done:
        _say(written)
    if options.estimates:
        options.cache.save(prune=True)  # every suite was rendered: answers nobody used are stale
    print(f"index: {write_index(done, folder / 'index.html')}")
    return 0


def page_name(suite: str) -> str:
    """A suite's page in `report all`'s folder: `NAME.html`, except for a suite named `index` (in any case, for
    case-insensitive file systems), whose page would be overwritten by the index page. Its page is
    `index.suite.html`: a dot cannot occur in a suite name, so no suite's own page can take that name.
    Renamed rather than refusing the suite name: results already recorded under `index/` stay reportable."""
    return "index.suite.html" if suite.lower() == "index" else f"{suite}.html"


def check_page(path: Path) -> Path:
    """A page the command will write, checked before any work: a name the file system takes, in a folder
    that can be created and written, and not a folder or a file that cannot be replaced. Symbolic links are
    followed, as the write will follow them."""
    import os

    from peftbench.paths import check_names, check_output_dir, exists, is_dir

    check_names(path, "-o")
    if is_dir(path):
        raise UserError(f"-o {shown(str(path))} is a folder; name the .html file to write")
    target = Path(os.path.realpath(path.expanduser()))
    check_output_dir(target.parent, f"-o {shown(str(path))} links to" if os.path.islink(path.expanduser()) else "-o")
    if exists(target) and not os.access(target, os.W_OK):
        raise UserError(f"-o {shown(str(path))}: the file is not writable")
    return path


def _say(written) -> None:
    sys.stdout.write(f"{written.suite}: {written.path} ({written.bytes / 1024:.0f} KiB, {written.runs} runs, "
                     f"{written.seconds:.1f} s)\n")
