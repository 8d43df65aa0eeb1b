"""bench/eval_share.py reads the evaluation share, and the validation passes' part of it, from records."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("eval_share", ROOT / "bench" / "eval_share.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(root: Path, name: str, task: str, timing: dict) -> None:
    path = root / "glue" / task / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"status": "success", "spec": {"preset": "cpu", "task": task, "adapter": "lora"},
                                "timing": timing}))


def test_shares_and_the_validation_column(tmp_path, capsys):
    es = _module()
    _write(tmp_path, "a", "sst2", {"eval_seconds": 10.0, "total_seconds": 100.0, "eval_validation_seconds": 4.0,
                                   "eval_merged": True})
    _write(tmp_path, "b", "rte", {"eval_seconds": 5.0, "total_seconds": 50.0})  # predates the field
    rows = es.shares(tmp_path, "cpu")
    assert sorted(r[0] for r in rows) == ["rte", "sst2"]
    es.report(rows, "cpu")
    out = capsys.readouterr().out
    sst2 = next(line for line in out.splitlines() if line.startswith("sst2"))
    assert sst2.split()[-3:] == ["10.0%", "10.0%", "4.0%"]
    rte = next(line for line in out.splitlines() if line.startswith("rte"))
    assert rte.split()[-1] == "-"
