"""Task registry: a task is data plus a scorer (see base.Task); `tasks/<name>/task.yaml` configures it."""

from __future__ import annotations

from ..errors import OpdbenchError
from ..registry import Registry
from .base import Example, Task
from .code import CodeTask
from .dialogue import DialogueTask
from .math import MathTask
from .real import REAL_TASKS

TASKS: Registry = Registry("task")
TASKS.register("math")(MathTask)
TASKS.register("code")(CodeTask)
TASKS.register("dialogue")(DialogueTask)
for _name, _cls in REAL_TASKS.items():  # gsm8k, math500, aime, mbpp, humaneval, ifeval
    TASKS.register(_name)(_cls)


def make_task(task_cfg) -> Task:
    cls = TASKS.get(task_cfg.name)
    params = dict(task_cfg.params)
    try:
        return cls(**params)
    except TypeError as err:
        raise OpdbenchError(f"bad parameters for task {task_cfg.name!r}: {err}") from err


__all__ = ["Example", "Task", "TASKS", "make_task"]
