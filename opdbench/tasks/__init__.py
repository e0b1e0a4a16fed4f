"""Task registry: a task is data plus a scorer (see base.Task); `tasks/<name>/task.yaml` configures it."""

from __future__ import annotations

from ..errors import OpdbenchError
from ..registry import Registry
from .base import Example, Task
from .code import CodeTask
from .dialogue import DialogueTask
from .math import MathTask

TASKS: Registry = Registry("task")
TASKS.register("math")(MathTask)
TASKS.register("code")(CodeTask)
TASKS.register("dialogue")(DialogueTask)
# The real tier's tasks are imported when one is used: a tiny-tier cell never loads their code.
REAL_TASKS = {"gsm8k": "math:GSM8KTask", "math500": "math:Math500Task", "aime": "math:AIMETask",
              "mbpp": "code:MBPPTask", "humaneval": "code:HumanEvalTask", "ifeval": "ifeval:IFEvalTask"}
for _name, _target in REAL_TASKS.items():
    TASKS.register_lazy(_name, f"{__name__}.real.{_target}")


def make_task(task_cfg) -> Task:
    cls = TASKS.get(task_cfg.name)
    params = dict(task_cfg.params)
    try:
        return cls(**params)
    except TypeError as err:
        raise OpdbenchError(f"bad parameters for task {task_cfg.name!r}: {err}") from err


__all__ = ["Example", "Task", "TASKS", "make_task"]
