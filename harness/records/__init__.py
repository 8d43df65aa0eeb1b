"""The run record and the result store. Pure Python, no torch: the leaderboard app imports these.

``record`` (the layout), ``check`` (a record read back, field by field), ``schema`` (its JSON Schema),
``store`` (a folder of JSON records).
"""
