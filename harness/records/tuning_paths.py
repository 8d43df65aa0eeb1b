"""Where a results folder keeps its tuning studies, trials and choices (harness/tuning/study.py)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

TUNING_DIR = "tuning"  # under the results folder: studies.db, trials/, choices/


def tuning_root(results: Path) -> Path:
    return Path(results) / TUNING_DIR


def default_storage(results: Path) -> str:
    return f"sqlite:///{(tuning_root(results) / 'studies.db').resolve()}"


def public_url(url: str) -> str:
    """A storage URL without credentials or query (what records, choices and logs may show)."""
    parts = urlsplit(url)
    if parts.scheme.startswith("sqlite"):  # a file path: no credentials to strip
        return url.split("?", 1)[0]
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip("._") or "_"


def choice_path(results: Path, suite: str, task: str, adapter: str, model: str, preset: str) -> Path:
    return (tuning_root(results) / "choices" / _slug(suite) / _slug(task) / _slug(adapter)
            / f"{_slug(model)}--{_slug(preset)}.json")
