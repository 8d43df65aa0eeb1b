"""The seed papers' result tables as data, and ``harness reproduce``: a table's rows planned through the
normal pipeline and set beside the papers' numbers."""
