"""Real-tier code: MBPP and HumanEval. The program is taken from the response (its last ```python
block, else its last fenced block, else the whole response), run with the dataset's hidden tests
in opdbench's sandbox (`opdbench.sandbox.run_many`), and scored by the fraction of tests passed.
"""

from __future__ import annotations

import re

from ...sandbox import run_many
from ..base import Example
from .data import HubTask, Source

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)  # unclosed: cut-off generation
_PYTHON_TAGS = {"python", "py", "python3"}


def extract_program(response: str) -> str:
    """The code in a response: the last ```python block, else the last fenced block, else the
    response itself (raw code, kept unstripped so a function body's indentation survives)."""
    blocks = _FENCE.findall(response)
    python = [body for tag, body in blocks if tag.lower() in _PYTHON_TAGS]
    if python or blocks:
        return (python or [body for _, body in blocks])[-1]
    return response


class SandboxedCodeTask(HubTask):
    """Scored by running a program against tests in the sandbox; `timeout_s` bounds each run."""

    def __init__(self, data_files: dict | None = None, max_new_tokens: int = 1024, timeout_s: float = 5.0):
        super().__init__(data_files, max_new_tokens)
        self.timeout_s = timeout_s

    def program(self, example: Example, code: str) -> str:
        return code

    def score(self, example: Example, response: str) -> float:
        return self.score_many([example], [response])[0]

    def score_many(self, examples: list[Example], responses: list[str]) -> list[float]:
        """One sandbox batch (`run_many`: a fork per candidate, not a fresh sandbox each)."""
        jobs = []
        for example, response in zip(examples, responses):
            try:
                program = self.program(example, extract_program(response)) if isinstance(response, str) else None
            except Exception:  # the scorer contract: malformed output scores 0, never raises
                program = None
            jobs.append((program, list(example.target["tests"])))
        # a non-str program is `invalid_input` in the sandbox: score 0 without running anything
        return [r.score for r in run_many(jobs, timeout_s=self.timeout_s, cpu_s=self.timeout_s)]


class MBPPTask(SandboxedCodeTask):
    """Mostly Basic Python Problems (Austin et al., 2021), the full config: 374 train, 500 test.
    The prompt shows the tests (as in the paper), so the model knows the function's name."""

    name = "mbpp"
    sources = {"train": [Source("google-research-datasets/mbpp", "full", "train")],
               "eval": [Source("google-research-datasets/mbpp", "full", "test")]}
    columns = ("task_id", "text", "code", "test_list", "test_setup_code")

    def example(self, row: dict) -> Example:
        tests = "\n".join(row["test_list"])
        prompt = (f"You are an expert Python programmer, and here is your task: {row['text']} "
                  f"Your code should pass these tests:\n\n{tests}\n\nWrite your solution in a ```python code block.")
        return Example(prompt=prompt, reference=f"```python\n{row['code']}\n```",
                       target={"tests": tuple(row["test_list"]), "setup": row["test_setup_code"] or ""},
                       meta={"task_id": row["task_id"]})

    def program(self, example: Example, code: str) -> str:
        # The setup code (imports, helper classes the asserts use) comes last, so the tests see it as written.
        return f"{code}\n\n{example.target['setup']}"


class HumanEvalTask(SandboxedCodeTask):
    """HumanEval (Chen et al., 2021): 164 functions from signature and docstring; eval only.
    One test (`check(entry_point)`), so the score is 0 or 1."""

    name = "humaneval"
    sources = {"eval": [Source("openai/openai_humaneval", None, "test")]}
    columns = ("task_id", "prompt", "canonical_solution", "test", "entry_point")

    def example(self, row: dict) -> Example:
        prompt = ("Complete the following Python function. Reply with the whole function in a ```python "
                  f"code block.\n\n```python\n{row['prompt']}```")
        return Example(prompt=prompt, reference=f"```python\n{row['prompt']}{row['canonical_solution']}```",
                       target={"tests": (f"{row['test']}\ncheck({row['entry_point']})",),
                               "stub": row["prompt"], "entry_point": row["entry_point"]},
                       meta={"task_id": row["task_id"]})

    def program(self, example: Example, code: str) -> str:
        """The stub (imports, helpers the function may call) first; then either the response's own
        definition of the function, or the response as the body that continues the stub."""
        stub, entry_point = example.target["stub"], example.target["entry_point"]
        if re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE):
            return f"{stub}\n\n{code}"
        return stub + code
