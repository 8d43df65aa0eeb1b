"""The Python API: plan and run a grid from a notebook, records back as a DataFrame (issue 34)."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError


def test_run_grid_api_runs_a_grid_and_returns_its_records(tmp_path, monkeypatch):
    from harness import run_grid_api

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARNESS_RESULTS_DIR", raising=False)
    planned = run_grid_api("toy", adapters=["head", "full"], seeds=[1, 2], dry_run=True)
    assert len(planned) == 8 and set(planned["state"]) == {"pending"}
    frame = run_grid_api("toy", adapters=["head", "full"], seeds=[1, 2], lr=0.05)
    assert len(frame) == 8 and set(frame["status"]) == {"success"}
    assert set(frame["adapter"]) == {"head", "full"} and frame["score"].notna().all()
    assert set(frame["store"]) == {"runs"} and (tmp_path / "runs" / "toy").is_dir()
    again = run_grid_api("toy", adapters="head", seeds=[1], lr=0.05)  # resumed: read back, not rerun
    assert len(again) == 2 and set(again["run_id"]) <= set(frame["run_id"])


def test_run_grid_api_raises_bad_input_as_one_error():
    from harness import run_grid_api

    with pytest.raises(HarnessError, match="did you mean"):
        run_grid_api("toy", adapters="haed", dry_run=True)
