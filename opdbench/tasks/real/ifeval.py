"""Real-tier dialogue: IFEval (Zhou et al., 2023), instructions with verifiable constraints
("answer in fewer than 40 words", "wrap the reply in JSON"). Score: the fraction of a prompt's
instructions the response follows, strict mode, by lm-eval's own checks (its instruction registry,
a port of Google's), so the numbers match lm-eval's `inst_level_strict_acc`.

Two of those checks (`length_constraints:number_sentences`, `change_case:capital_word_frequency`)
split sentences with nltk's Punkt model, data (`punkt_tab`) that nltk downloads and no package
ships. lm-eval tries that download when imported. Without the data the task refuses to start,
unless `punkt_fallback=true`: then those two checks use an *untrained* Punkt splitter (the same
algorithm without learned abbreviations, so "Dr. Smith" may count as two sentences), and a
warning says so.
"""

from __future__ import annotations

import contextlib
import io
import sys

from ...errors import OpdbenchError
from ..base import Example
from .data import HubTask, Source


def punkt_available() -> bool:
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return True
    except LookupError:
        return False


class IFEvalTask(HubTask):
    """541 prompts, each with one or more verifiable instructions; eval only (the hub calls the
    split `train`)."""

    name = "ifeval"
    sources = {"eval": [Source("google/IFEval", None, "train")]}
    columns = ("key", "prompt", "instruction_id_list", "kwargs")

    def __init__(self, data_files: dict | None = None, max_new_tokens: int = 1280, punkt_fallback: bool = False):
        super().__init__(data_files, max_new_tokens)
        self._strict_check = _load_lm_eval_checks(punkt_fallback)

    def example(self, row: dict) -> Example:
        target = {"key": row["key"], "prompt": row["prompt"], "instruction_id_list": list(row["instruction_id_list"]),
                  "kwargs": [dict(k) for k in row["kwargs"]]}
        return Example(prompt=row["prompt"], reference="", target=target, meta={"key": row["key"]})

    def score(self, example: Example, response: str) -> float:
        from lm_eval.tasks.ifeval.utils import InputExample

        if not isinstance(response, str):
            return 0.0
        try:
            followed = self._strict_check(InputExample(**example.target), response).follow_instruction_list
        except Exception:  # the scorer contract: malformed output scores 0, never raises
            return 0.0
        return sum(followed) / len(followed) if followed else 0.0


def _load_lm_eval_checks(punkt_fallback: bool):
    """lm-eval's strict IFEval check, after making sure its sentence splitter can run."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        # importing it tries to download punkt_tab; offline that prints a misleading "Downloaded"
        from lm_eval.tasks.ifeval import instructions_util, utils
    import langdetect

    langdetect.DetectorFactory.seed = 0  # the language checks are random otherwise
    if not punkt_available():
        if not punkt_fallback:
            raise OpdbenchError(
                "task 'ifeval' needs nltk's punkt_tab data (its sentence-count checks), which is not "
                "installed; run `python -m nltk.downloader punkt_tab` where a network is reachable, or set "
                "task.params.punkt_fallback=true to use an untrained Punkt splitter for those checks")
        _use_untrained_punkt(instructions_util)
        print("warning: ifeval: nltk punkt_tab data not found; sentence-count checks use an untrained "
              "Punkt splitter (may differ from official IFEval on abbreviations)", file=sys.stderr)
    return utils.test_instruction_following_strict


class _NltkWithUntrainedPunkt:
    """nltk as lm-eval's IFEval module sees it, but with `word_tokenize` splitting sentences by an
    untrained Punkt model instead of the missing punkt_tab one."""

    def __init__(self, splitter):
        import nltk
        from nltk.tokenize.destructive import NLTKWordTokenizer

        self._nltk, self._splitter, self._words = nltk, splitter, NLTKWordTokenizer()

    def word_tokenize(self, text: str) -> list[str]:  # what nltk.word_tokenize does, minus the data
        return [word for sentence in self._splitter.tokenize(text) for word in self._words.tokenize(sentence)]

    def __getattr__(self, name):
        return getattr(self._nltk, name)


def _use_untrained_punkt(instructions_util) -> None:
    """Point lm-eval's two punkt users (count_sentences, and nltk.word_tokenize through its `nltk`
    name) at an untrained splitter. Only lm-eval's IFEval module is changed, not nltk."""
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    splitter = PunktSentenceTokenizer()
    instructions_util._get_sentence_tokenizer = lambda: splitter
    instructions_util.nltk = _NltkWithUntrainedPunkt(splitter)
