"""The ``instructeval`` suite: Alpaca instruction tuning evaluated on INSTRUCTEVAL with lm-eval.

``suite.py`` the suite (options, the lm-eval calls, HumanEval scoring), ``sandbox.py`` the kernel
sandbox that HumanEval's generated code runs in (only after the user opts in), ``lm_eval_tasks/`` the
lm-eval task definitions (``ie_*``) and their data readers. Importing the package registers the suite.
"""

from suites.instructeval.suite import InstructEval

__all__ = ["InstructEval"]
