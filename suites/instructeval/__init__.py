"""The ``instructeval`` suite: Alpaca instruction tuning evaluated on INSTRUCTEVAL with lm-eval.

``suite.py`` the suite (options, data checks, the run), ``lm_eval_run.py`` around the lm-eval calls
(task names, averages, quiet output, HumanEval scoring), ``sandbox.py`` (and ``sandbox_programs.py``) the kernel
sandbox that HumanEval's generated code runs in (only after the user opts in), ``lm_eval_tasks/`` the
lm-eval task definitions (``ie_*``) and their data readers. Importing the package registers the suite.
"""

from suites.instructeval.suite import InstructEval

__all__ = ["InstructEval"]
