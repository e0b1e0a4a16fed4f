"""Real-tier math: GSM8K, MATH-500, AIME. The response's final answer (the last `\\boxed{...}`, or
else the last "answer: ..." / "the answer is ..." line) is compared with the reference answer by
math-verify, which parses both to sympy and decides equivalence (`\\frac{1}{2}` = `0.5`,
`1,000` = `1000`, `x=5` = `5`), so formatting alone never costs a correct answer its point.
"""

from __future__ import annotations

import re
import threading

from ...errors import OpdbenchError
from ..base import Example
from .data import HubTask, Source

INSTRUCTION = "\n\nPlease reason step by step, and put your final answer within \\boxed{}."
MAX_ANSWER_CHARS = 300  # no real final answer is longer; caps the work an adversarial response can cause
MAX_BOXES = 20
TIME_LIMIT_S = 2  # per math-verify parse or comparison: a real answer takes milliseconds, a 10^10^10 can take forever

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_LINE = re.compile(r"answer\s*(?:is|:)\s*:?(.*)", re.IGNORECASE)
_DECORATION = re.compile(r"^[\s*$]+|[\s*$.]+$")  # markdown bold, $...$, a closing full stop


def last_boxed(text: str) -> str | None:
    """The content of the last well-formed `\\boxed{...}` (or `\\fbox{...}`) in `text`, or None.
    Only the last MAX_BOXES are tried, each up to MAX_ANSWER_CHARS: bounded work on any input."""
    for match in list(_BOXED.finditer(text))[::-1][:MAX_BOXES]:
        depth, start = 1, match.end()
        for i in range(start, min(len(text), start + MAX_ANSWER_CHARS + 1)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[start:i]
    return None


def final_answer(response: str) -> str | None:
    """The answer a response commits to: its last boxed expression, else its last answer line."""
    boxed = last_boxed(response)
    if boxed is not None:
        return boxed.strip()
    for line in reversed(response.splitlines()):
        match = _ANSWER_LINE.search(line)
        if match:
            answer = match.group(1).strip()[:MAX_ANSWER_CHARS + 1]  # longer is rejected anyway; keeps the regex linear
            return _DECORATION.sub("", answer) or None
    return None


def is_equivalent(gold: str, answer: str) -> bool:
    """Math equivalence by math-verify. Its time limits use SIGALRM, which only the main thread
    may set (elsewhere math-verify would quietly fail every answer), so other threads run without
    one; MAX_ANSWER_CHARS still bounds the input."""
    from math_verify import LatexExtractionConfig, parse, verify

    if len(answer) > MAX_ANSWER_CHARS:
        return False
    limit = TIME_LIMIT_S if threading.current_thread() is threading.main_thread() else None
    config = [LatexExtractionConfig()]
    gold_parsed = parse(f"\\boxed{{{gold}}}", config, parsing_timeout=limit)
    answer_parsed = parse(f"\\boxed{{{answer.strip('$')}}}", config, parsing_timeout=limit)
    return bool(gold_parsed and answer_parsed and verify(gold_parsed, answer_parsed, timeout_seconds=limit))


def with_boxed(solution: str | None, answer: str) -> str:
    """A reference response: the worked solution, ending in the boxed answer if it does not already."""
    solution = (solution or "").strip()
    if last_boxed(solution) is not None:
        return solution
    return f"{solution}\n\nThe answer is \\boxed{{{answer}}}.".strip()


class FinalAnswerTask(HubTask):
    """A math task scored 1 when the response's final answer is equivalent to `Example.target`."""

    def __init__(self, data_files: dict | None = None, max_new_tokens: int = 2048,
                 instruction: str = INSTRUCTION):
        super().__init__(data_files, max_new_tokens)
        self.instruction = instruction

    def score(self, example: Example, response: str) -> float:
        try:
            answer = final_answer(response)
            return float(answer is not None and is_equivalent(str(example.target), answer))
        except Exception:  # the scorer contract: malformed output scores 0, never raises
            return 0.0


class GSM8KTask(FinalAnswerTask):
    """Grade-school word problems; the reference solution ends in a line `#### N`."""

    name = "gsm8k"
    sources = {"train": [Source("openai/gsm8k", "main", "train")],
               "eval": [Source("openai/gsm8k", "main", "test")]}
    columns = ("question", "answer")

    def __init__(self, data_files: dict | None = None, max_new_tokens: int = 512,
                 instruction: str = INSTRUCTION):
        super().__init__(data_files, max_new_tokens, instruction)

    def example(self, row: dict) -> Example:
        reasoning, _, answer = row["answer"].rpartition("####")
        answer = answer.strip().replace(",", "")
        reasoning = re.sub(r"<<[^>]*>>", "", reasoning)  # calculator annotations: not for the model to copy
        return Example(prompt=row["question"] + self.instruction, reference=with_boxed(reasoning, answer),
                       target=answer)


class Math500Task(FinalAnswerTask):
    """MATH-500: the 500-problem test subset of MATH (Lightman et al., 2023); eval only."""

    name = "math500"
    sources = {"eval": [Source("HuggingFaceH4/MATH-500", None, "test")]}
    columns = ("problem", "solution", "answer")

    def example(self, row: dict) -> Example:
        return Example(prompt=row["problem"] + self.instruction, reference=with_boxed(row["solution"], row["answer"]),
                       target=row["answer"], meta={"subject": row.get("subject"), "level": row.get("level")})


AIME_SOURCES = {2024: Source("HuggingFaceH4/aime_2024", None, "train"),
                2025: Source("math-ai/aime25", None, "test")}


class AIMETask(FinalAnswerTask):
    """AIME problems (integer answers 0-999) of the chosen years; eval only. With data_files, the
    files given are used as they are (`years` only picks hub datasets)."""

    name = "aime"
    columns = ("problem", "answer")

    def __init__(self, years: list[int] = (2024, 2025), data_files: dict | None = None,
                 max_new_tokens: int = 8192, instruction: str = INSTRUCTION):
        super().__init__(data_files, max_new_tokens, instruction)
        unknown = [y for y in years if y not in AIME_SOURCES]
        if unknown or not years:
            raise OpdbenchError(f"bad value: task.params.years={list(years)}; valid years: {list(AIME_SOURCES)}")
        self.sources = {"eval": [AIME_SOURCES[y] for y in years]}

    def example(self, row: dict) -> Example:
        answer = str(row["answer"]).strip()
        return Example(prompt=row["problem"] + self.instruction, reference=with_boxed(row.get("solution"), answer),
                       target=answer, meta={"id": row.get("id")})
