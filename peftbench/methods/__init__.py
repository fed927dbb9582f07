"""The method registry. Importing this package registers every method; see `base.Method`."""

from peftbench.methods import adapters, full, peft_methods  # noqa: F401  (registration side effects)
from peftbench.methods.base import FAMILIES, Method, MethodContext, count_parameters, get_method, registry

__all__ = ["FAMILIES", "Method", "MethodContext", "count_parameters", "get_method", "registry"]
