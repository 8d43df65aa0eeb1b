"""JSON-lines files as the instruction suites read and write them (FastChat's answer and judgment files,
lm-eval's results beside a record): one clear error naming the file and line for a bad line, and
writes that a killed run never leaves half done."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.datafiles import read_checked
from harness.errors import HarnessError


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise HarnessError(f"{path} does not exist")
    rows = []
    text = read_checked(path, lambda: path.read_bytes().decode("utf-8"), "JSON lines")
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise HarnessError(f"{path} line {number} is not JSON ({exc.msg})") from None
            except RecursionError:
                raise HarnessError(f"{path} line {number}: JSON nested too deeply") from None
    return rows


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> Path:
    """Written aside and renamed into place, so a killed run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; answer files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
