"""The ``rscd`` suite: ``data.py`` the road-surface classes, label modes and the release's folders,
``models.py`` the vision backbones, ``suite.py`` the suite itself. Importing the package registers the
suite; the names other code uses are importable from here."""

from suites.rscd.data import (
    FIXTURE_MARKER,
    MODES,
    RoadClass,
    all_classes,
    label_from_path,
    mode_classes,
    parse_class_name,
    stratified_sample,
)
from suites.rscd.models import MODELS, VisionModel
from suites.rscd.suite import Rscd, RscdOptions

__all__ = ["FIXTURE_MARKER", "MODELS", "MODES", "RoadClass", "Rscd", "RscdOptions", "VisionModel", "all_classes",
           "label_from_path", "mode_classes", "parse_class_name", "stratified_sample"]
