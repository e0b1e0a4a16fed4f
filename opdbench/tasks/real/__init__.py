"""Real-tier tasks (GPU-scale models): hub datasets or local JSON-lines files, real scorers.

Heavy libraries (datasets, math-verify, lm-eval) are imported only when a task loads or scores.
"""

from .code import HumanEvalTask, MBPPTask
from .ifeval import IFEvalTask
from .math import AIMETask, GSM8KTask, Math500Task

REAL_TASKS = {cls.name: cls for cls in (GSM8KTask, Math500Task, AIMETask, MBPPTask, HumanEvalTask, IFEvalTask)}

__all__ = ["REAL_TASKS", "GSM8KTask", "Math500Task", "AIMETask", "MBPPTask", "HumanEvalTask", "IFEvalTask"]
