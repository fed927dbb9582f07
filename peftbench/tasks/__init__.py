"""Task kinds, one class each, looked up by the `kind:` a suite declares."""

from peftbench.tasks.base import PreparedTask, TaskKind
from peftbench.tasks.classification import Classification
from peftbench.tasks.generation import Generation
from peftbench.tasks.multiple_choice import MultipleChoice

TASK_KINDS: dict[str, TaskKind] = {k.name: k for k in (Classification(), Generation(), MultipleChoice())}

__all__ = ["TASK_KINDS", "PreparedTask", "TaskKind"]
