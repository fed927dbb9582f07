"""`peftbench doctor`: do the installed libraries still agree with what peftbench ships?"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check the shipped estimator answers against the installed torch/transformers/peft",
        description="Re-traces a handful of shipped shape fits (the canaries) with the installed libraries and "
                    "says whether the shipped answers still hold, and whether the architecture defaults that match a "
                    "local config to a preset are still transformers'. Exit code 0: still valid; 1: drifted.")
    parser.set_defaults(func=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from peftbench.cache import computed_with
    from peftbench.estimate import canary

    installed = computed_with()
    results = []
    for model, method in tqdm(canary.CANARIES, desc="canaries", unit="trace", file=sys.stderr):
        results.append(canary.check(model, method))
    traced_with = sorted({", ".join(f"{k} {v}" for k, v in sorted(r.computed_with.items())) for r in results})
    print(f"installed: {', '.join(f'{k} {v}' for k, v in sorted(installed.items()))}")
    print(f"shipped fits traced with: {'; '.join(traced_with) or 'unrecorded'}")
    print(f"{'canary':<28} {'fit peak':>10} {'traced':>10} {'drift':>8}")
    for r in results:
        print(f"{r.model + ' ' + r.method:<28} {_gib(r.fit_peak):>10} {_gib(r.traced_peak):>10} {r.peak_drift:>8.3%}"
              + ("" if r.holds else "  DRIFTED"))
    print(canary.verdict(results))
    drifted = _architecture_defaults()
    return 0 if all(r.holds for r in results) and not drifted else 1


def _architecture_defaults() -> list[str]:
    """Whether a local config still matches a preset as today's transformers would build it: the shipped
    architecture defaults (`models.config_identity`) against the installed ones."""
    from peftbench.models import config_identity

    drifted = config_identity.defaults_drift()
    if drifted:
        print(f"architecture defaults: transformers changed {', '.join(drifted)}: rewrite them with "
              f"{config_identity.REWRITE_DEFAULTS}")
    else:
        print("architecture defaults: still valid (local configs are matched to presets as transformers builds them)")
    return drifted


def _gib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**30:.3f}G"
