"""The command line: ``python -m harness run|tune|ls|params|report|reproduce|analyze``.

Flags become a request (``run_options``), the request goes to ``harness.pipeline.plan`` and the planned
runs to ``harness.grid``; ``report`` reads the store through ``harness.aggregate``. Nothing below this
package imports it.
"""
