"""The evidence set (reference results, or the one the user names) and the method metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peftbench.method_declarations import catalogue
from peftbench.recommend.evidence import Evidence, load_evidence


def method_catalogue() -> dict[str, dict[str, Any]]:
    """name -> family, architectures, defaults, description, from the torch-free declarations."""
    return catalogue()


def default_evidence(results: Path | None = None) -> Evidence:
    """The reference results shipped with peftbench, or the evidence set the user names (`results`, a results
    root): a user's ad-hoc runs in ./results (a 2-step check, a random-init model) are never evidence unasked."""
    from peftbench.errors import UserError
    from peftbench.results import reference_results_dir, suite_result_files

    if results is None:
        return load_evidence(suite_result_files(reference_results_dir()))
    files = suite_result_files(Path(results))
    if not files:
        raise UserError(f"--results {results}: no runs files there (expected {results}/<suite>/runs.jsonl)")
    return load_evidence(files)
