"""Paths and sizes (issue 36, class 5): any path the OS refuses (too long, not searchable, read-only) is
one ``error:`` line with exit code 2 for every option that takes a path; the store deletes only its own
temporary files (their exact name, a regular file of this account), never a user's; a data file is
validated streaming at plan time, with memory bounded whatever its size. (The integer and float ranges
of the class are tests/test_plan_ranges.py.)"""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.errors import HarnessError
from harness.records.store import STALE_TEMP_SECONDS, ResultStore

TOY = ("run", "--suite", "toy", "--adapters", "head", "--device", "cpu", "--no-progress", "--dry-run")
LONG_NAME = "n" * 300  # one component over NAME_MAX (255)
DEEP = "/".join(["d" * 200] * 30)  # a path over PATH_MAX (4096)


def _one_error(argv: list[str], capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(errors) == 1 and "Traceback" not in err, err
    assert len(errors[0]) < 400, errors[0]  # a 5000-character path is shortened
    return errors[0]


@pytest.fixture
def store_with_a_record(tmp_path: Path) -> Path:
    from tests.record_factory import make_record

    root = tmp_path / "results"
    ResultStore(root).write(make_record())
    return root


@pytest.mark.parametrize("long", [LONG_NAME, DEEP], ids=["name-too-long", "path-too-long"])
@pytest.mark.parametrize("where", ["run --results-dir", "run --data-dir", "run --config", "run --model",
                                   "report --results-dir", "report --out", "reproduce --results-dir"])
def test_every_path_option_refused_by_the_os_is_one_line(where: str, long: str, tmp_path: Path,
                                                          store_with_a_record: Path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = str(tmp_path / long)
    command, flag = where.split()
    if command == "run":
        argv = [*TOY, "--results-dir", str(tmp_path / "r"), flag, path]
    elif command == "report":
        out = str(tmp_path / "out")
        argv = ["report", "--results-dir", str(store_with_a_record), "--out", out, flag,
                long if flag == "--baseline" else path]
    else:
        argv = ["reproduce", "msplora-t1", "--preset", "cpu", "--dry-run", "--results-dir", path]
    line = _one_error(argv, capsys)
    assert "too long" in line or "does not exist" in line or "cannot" in line, line


def test_an_over_long_baseline_name_becomes_a_short_safe_file_name(tmp_path: Path, store_with_a_record: Path):
    """A --baseline is a name, not a path: an over-long one is written under a slug plus a hash
    (harness.untrusted), inside --out."""
    from harness.cli.main import main

    out = tmp_path / "out"
    assert main(["report", "--results-dir", str(store_with_a_record), "--out", str(out), "--baseline", LONG_NAME]) == 0
    assert all(len(p.name) < 200 and p.parent == out for p in out.iterdir())


def test_a_folder_that_cannot_be_written_is_one_line(store_with_a_record: Path, capsys):
    line = _one_error(["report", "--results-dir", str(store_with_a_record), "--out", "/proc/harness-out"], capsys)
    assert "/proc/harness-out" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root passes every permission check")
def test_a_folder_without_permission_is_one_line(tmp_path: Path, store_with_a_record: Path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o000)
    try:
        line = _one_error(["report", "--results-dir", str(store_with_a_record), "--out", str(locked / "o")], capsys)
        assert "Permission denied" in line
    finally:
        locked.chmod(0o700)


# ---------------------------------------------------------------------------------------------------
# temporary files: only the store's own are ever deleted
# ---------------------------------------------------------------------------------------------------


def _old(path: Path, text: str = "{}") -> Path:
    path.write_text(text)
    old = time.time() - STALE_TEMP_SECONDS - 3600
    os.utime(path, (old, old))
    return path


def test_only_the_stores_own_old_temporary_files_are_deleted(tmp_path: Path, capsys):
    root = tmp_path / "results"
    folder = root / "toy" / "sign"
    folder.mkdir(parents=True)
    ours = _old(folder / ".tmp-123@elsewhere@ab3d_f9z.json")  # another host's writer, a day old: stale
    users = [_old(folder / name) for name in (
        ".tmp-notes.json", ".tmp-draft", ".tmp-123@elsewhere@ab3d_f9z.json.bak", ".tmp-123@elsewhere@TOOLONGNAME.json",
        ".tmp-x@elsewhere@ab3d_f9z.json", ".tmp-123@elsewhere@AB3D_F9Z.json")]
    (root / "mine").mkdir()
    users.append(_old(root / "mine" / ".tmp-my-scratch.json"))
    link = folder / ".tmp-124@elsewhere@abcdefgh.json"
    link.symlink_to(users[0])  # a link with our pattern: not a file of ours
    matching_folder = folder / ".tmp-125@elsewhere@abcdefgh.json"
    matching_folder.mkdir()
    # through `run`: the next grid cleans the store before it starts
    assert main(["run", "--suite", "toy", "--adapters", "head", "--device", "cpu", "--no-progress", "--tasks",
                 "sign", "--seeds", "1", "--max-steps", "1", "--results-dir", str(root)]) == 0
    assert not ours.exists()
    assert all(p.exists() for p in users), [p.name for p in users if not p.exists()]
    assert link.is_symlink() and matching_folder.is_dir()
    assert ResultStore(root).clean_stale_temps() == []


def test_a_temporary_file_of_another_account_is_kept(tmp_path: Path, monkeypatch):
    path = _old(tmp_path / ".tmp-123@elsewhere@abcdefgh.json")
    monkeypatch.setattr(os, "getuid", lambda: os.stat(path).st_uid + 1)
    assert ResultStore(tmp_path).clean_stale_temps() == [] and path.exists()


# ---------------------------------------------------------------------------------------------------
# data files: validated streaming, memory bounded whatever the size
# ---------------------------------------------------------------------------------------------------


def _big_rte(root: Path, shared_data: Path, megabytes: int, bad_last_line: bool = False) -> Path:
    src = shared_data / "glue" / "RTE"
    folder = root / "glue" / "RTE"
    folder.mkdir(parents=True)
    (folder / "dev.tsv").write_bytes((src / "dev.tsv").read_bytes())
    rows = (src / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    header, body = rows[0], "".join(rows[1:])
    with open(folder / "train.tsv", "w", encoding="utf-8") as fh:
        fh.write(header)
        while fh.tell() < megabytes * 2**20:
            fh.write(body)
        if bad_last_line:
            fh.write("99\tA sentence.\tAnother.\tmaybe\n")
    return folder / "train.tsv"


def test_a_large_training_file_is_checked_with_bounded_memory(tmp_path: Path, shared_data: Path, monkeypatch):
    from harness import datafiles
    from harness.suite import DataSource
    from suites import glue

    monkeypatch.setattr(glue.data, "STREAM_CHECK_BYTES", 2**20)  # the real threshold is 64 MiB: the same code path
    train = _big_rte(tmp_path, shared_data, 40)
    size = train.stat().st_size
    datafiles.clear_cache()
    tracemalloc.start()
    try:
        glue.Glue().check_data("rte", DataSource(tmp_path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20 and peak < size / 5, (peak, size)  # the dev split (small) is kept; train is not

    bad = tmp_path / "bad"
    train = _big_rte(bad, shared_data, 5, bad_last_line=True)
    lines = sum(1 for _ in open(train, "rb"))
    with pytest.raises(HarnessError, match=f"train.tsv, line {lines}: label 'maybe' is not one of"):
        glue.Glue().check_data("rte", DataSource(bad))


def test_a_small_file_is_still_read_once_and_kept(shared_data: Path):
    from harness import datafiles
    from suites import glue

    datafiles.clear_cache()
    glue.check_offline_splits(glue.TASKS["rte"], shared_data / "glue")
    train = glue.offline_splits(glue.TASKS["rte"], shared_data / "glue")[0]
    assert train is glue.offline_splits(glue.TASKS["rte"], shared_data / "glue")[0]
