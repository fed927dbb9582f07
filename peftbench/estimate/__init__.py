"""Resource estimator: peak memory, FLOPs and step time of one training step, from the config alone.

Imports are lazy (PEP 562): `import peftbench.estimate` loads neither torch nor transformers, so the CLI
answers from the disk cache without paying ~5 s of imports for the libraries it does not need.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Estimate", "estimate", "estimate_config", "predict_run_peak"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from peftbench.estimate import api

        return getattr(api, name)
    raise AttributeError(f"module 'peftbench.estimate' has no attribute {name!r}")
