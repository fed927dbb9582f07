"""The fine-tuning methods' names, known without the method registry: importing it imports torch and peft
(seconds), too slow to refuse a mistyped `--method`."""

from __future__ import annotations

from peftbench.errors import UserError, did_you_mean, shown


def method_names() -> list[str]:
    """Sorted: as the estimator's shape fits were shipped, else as the recommender cached the registry's catalogue
    (both are keyed by the versions that void them); the registry itself only when neither is current."""
    from peftbench.estimate.front_cache import shipped_methods

    names = shipped_methods()
    if names:
        return names
    from peftbench.recommend.fitting import method_catalogue

    return sorted(method_catalogue())


def check_method(name: str) -> str:
    """`name` when it names a method, else a UserError with the closest names and every valid one."""
    names = method_names()
    if name not in names:
        raise UserError(f"unknown method {shown(name)}{did_you_mean(name, names)} (valid: {', '.join(names)})")
    return name
