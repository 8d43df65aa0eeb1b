"""One run, in the order it happens: ``plan`` (request -> frozen specs), then per spec ``load`` (model and
data), ``attach`` (the adapter at its sites), ``train``, ``evaluation``, ``collect`` (analyses, saved
adapter) and ``runner`` (one spec in, one record out). This package never imports ``grid``, ``cli``,
``tuning`` or ``papers`` (tests/test_imports.py).
"""
