"""Self-contained HTML comparison reports: one page per suite, from `results/<suite>/runs.jsonl`.

`tables` and `runs` turn the results table into plain data, `plots` and `pareto` draw inline SVG, `predictions`
asks the estimator and recommender (both optional), `verdict` says per task what to use on the first screen,
`render` fills the Jinja2 templates, `build` ties it up.
"""

from __future__ import annotations

from peftbench.report.build import Options, Written, suite_context, write_index, write_suite_report

__all__ = ["Options", "Written", "suite_context", "write_index", "write_suite_report"]
