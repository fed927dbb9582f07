"""The recommender: which PEFT method (and model) for a task and a GPU, with reasons and evidence.

Quality comes from a model fitted on peftbench's own results plus cited published figures; feasibility
and cost come from `peftbench.estimate`. Nothing here imports torch, transformers or scikit-learn at
module level: a cached call answers in well under 3 s.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Candidate", "Recommendation", "recommend", "evaluate"]


def __getattr__(name: str) -> Any:
    if name in ("Candidate", "Recommendation", "recommend"):
        from peftbench.recommend import engine

        return getattr(engine, name)
    if name == "evaluate":
        from peftbench.recommend.evaluate import evaluate

        return evaluate
    raise AttributeError(f"module 'peftbench.recommend' has no attribute {name!r}")
