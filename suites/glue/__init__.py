"""The ``glue`` suite: ``data.py`` the tasks, their budgets and the TSV / hub readers, ``batches.py`` the
metrics and padded batches, ``suite.py`` the suite itself. Importing the package registers the suite; the
names other code uses are importable from here."""

from suites.glue.batches import Encoded, bucket_width, collate, encode, glue_metrics, head_module_names
from suites.glue.data import (
    CORE_TASKS,
    CPU_TRAIN,
    TASKS,
    Example,
    GlueTask,
    check_offline_splits,
    offline_splits,
    read_split,
    read_tsv,
    read_tsv_lines,
)
from suites.glue.suite import Glue

__all__ = ["CORE_TASKS", "CPU_TRAIN", "TASKS", "Encoded", "Example", "Glue", "GlueTask", "bucket_width",
           "check_offline_splits", "collate", "encode", "glue_metrics", "head_module_names", "offline_splits",
           "read_split", "read_tsv", "read_tsv_lines"]
