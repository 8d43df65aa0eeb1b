"""Built-in suite plug-ins, registered with ``@register_suite``.

One module per suite (``glue.py``, ``coco_retrieval.py``, ``rscd.py``, ``toy.py``), or one package per
suite that has helpers of its own (``instructeval/``, ``mt_bench/``); ``_shared/`` holds the helpers that
several suites use. The registry imports every module and package here whose name does not start with
``_``. ``toy.py`` is the smallest complete suite: the template for a new one.
"""
