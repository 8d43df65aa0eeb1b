"""The ``mt-bench`` suite: Alpaca instruction tuning evaluated on MT-Bench with an LLM judge.

``suite.py`` the suite (the run), ``options.py`` its options and the judge chosen from them, ``answers.py`` questions and model answers in
FastChat's formats, ``judges.py`` who judges (an OpenAI-compatible endpoint or a local model),
``judging.py`` FastChat's prompts, rating parsing, the judgment cache and the scores. Importing the
package registers the suite (the registry imports every package and module of ``suites`` whose name
does not start with ``_``).
"""

from suites.mt_bench.suite import MTBench

__all__ = ["MTBench"]
