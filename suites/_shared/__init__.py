"""Helpers used by more than one suite (the ``_`` prefix: not a plug-in, the registry skips it).

``instruct.py`` Alpaca instruction tuning of a causal LM (the base of ``instructeval`` and ``mt-bench``),
``jsonl.py`` JSON-lines files (their answer, judgment and results files), ``vision.py`` image loading and
the vision models of ``coco-retrieval`` and ``rscd``, ``models.py`` where a model's weights and offline
config come from (GLUE and the instruction suites). Batching shared with GLUE is in ``harness/batching.py``;
a helper of one suite alone lives in that suite's package.
"""
