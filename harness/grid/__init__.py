"""Executing a grid: which runs are pending, where they run (executors: in process, worker processes,
Ray, Slurm), what the user sees while they run, and signals. Each run is handed to
``harness.pipeline.runner`` (one spec in, one record out) and its record to ``harness.records.store``.
"""
