"""Hostile and broken stores (issue 15, "The store, report and app").

Classes: (1) files that are not records: skipped with one warning each, never fatal, in the store, the
report, the dry run and the app; (2) bad values in usable records: read as missing (None), never
counted, one warning per file; (3) what would block a record's write: one error line at plan time,
before any training; (4) a write that fails anyway (a full disk): the record is kept elsewhere, the
grid goes on, the exit code says so; (5) a record of a newer schema: never overwritten; (6) records
and report tables are created with the process umask.
"""

from __future__ import annotations

import errno
import json
import math
import os
import warnings
from pathlib import Path

import pytest

from harness import aggregate
from harness.cli.main import main
from harness.records.check import MAX_DEPTH, check_record
from harness.records.record import SCHEMA_VERSION
from harness.records.store import UNSAVED_DIR, ResultStore, StoreWarning
from tests.record_factory import make_record


def _nested(depth: int, leaf: object = 1) -> object:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def _with(**changes: object) -> bytes:
    record = make_record(seed=7)
    record.update(changes)
    return json.dumps(record).encode()


def _key_with(**changes: object) -> bytes:
    record = make_record(seed=7)
    record["key"] = {**record["key"], **changes}
    return json.dumps(record).encode()


DEEP = 100_000
# (id, file content, what the warning says)
NOT_RECORDS = [
    ("nested-array-100k", b"[" * DEEP + b"]" * DEEP, "nested deeper"),
    ("nested-object-100k", b'{"a":' * DEEP + b"1" + b"}" * DEEP, "nested deeper"),
    ("nested-inside-a-record", _with(analysis={"deep": _nested(MAX_DEPTH + 5)}), "nested deeper"),
    ("nested-below-recursion-limit", _with(analysis={"deep": _nested(900)}), "nested deeper"),
    ("run-id-list", _with(run_id=["glue", "rte"]), "run_id"),
    ("run-id-number", _with(run_id=12), "run_id"),
    ("run-id-empty", _with(run_id=" "), "run_id"),
    ("run-id-null", _with(run_id=None), "run_id"),
    ("key-list", _with(key=["glue", "rte"]), "'key' is a JSON array"),
    ("seed-string", _key_with(seed="7"), "key.seed"),
    ("seed-bool", _key_with(seed=True), "key.seed"),
    ("seed-float", _key_with(seed=7.5), "key.seed"),
    ("suite-list", _key_with(suite=["glue"]), "key.suite"),
    ("adapter-missing", _key_with(adapter=None), "key.adapter"),
    ("status-list", _with(status=["success"]), "status"),
    ("status-object", _with(status={"a": 1}), "status"),
    ("status-unknown", _with(status="weird"), "status"),
    ("schema-version-string", _with(schema_version="1"), "schema_version"),
    ("schema-version-old", _with(schema_version=0), "schema_version 0"),
    ("spec-string", _with(spec="glue"), "'spec'"),
    ("success-without-metrics", _with(metrics=None), "metrics.score"),
    ("success-metrics-list", _with(metrics=[0.9]), "metrics.score"),
    ("missing-key", b'{"schema_version": 1, "run_id": "x", "spec": {}, "status": "failed"}', "missing 'key'"),
    ("missing-everything", b"{}", "missing 'schema_version'"),
    ("truncated", _with()[:200], "unreadable JSON"),
    ("empty-file", b"", "unreadable JSON"),
    ("binary", bytes(range(256)) * 8, "not UTF-8"),
    ("latin-1", json.dumps(make_record(seed=7), ensure_ascii=False).replace("glue/", "gl\xfce/").encode("latin-1"),
     "not UTF-8"),
    ("utf-8-bom", b"\xef\xbb\xbf" + _with(), "unreadable JSON"),
    ("top-level-array", b"[1, 2, 3]", "a JSON array"),
    ("top-level-string", b'"a record"', "a JSON string"),
    ("top-level-null", b"null", "a JSON null"),
    ("top-level-number", b"1e999", "a JSON number"),
]


def _good_store(root: Path) -> ResultStore:
    store = ResultStore(root)
    store.write(make_record(seed=1, score=0.6))
    return store


@pytest.mark.parametrize("content,why", [c[1:] for c in NOT_RECORDS], ids=[c[0] for c in NOT_RECORDS])
def test_a_file_that_is_not_a_record_is_skipped_with_one_warning(content: bytes, why: str, tmp_path: Path, capsys):
    store = _good_store(tmp_path)
    key = make_record(seed=7)["key"]
    bad = store.path_for(key)  # where the run's record would be: resume and the dry run read it too
    bad.write_bytes(content)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = store.load()
    mine = [w for w in caught if issubclass(w.category, StoreWarning)]
    assert len(mine) == 1 and str(bad) in str(mine[0].message) and why in str(mine[0].message)
    assert len(report.records) == 1 and report.skipped[0][0] == str(bad)
    assert store.status(key) is None and not store.is_complete(key)  # pending: rerun, never a crash

    assert main(["report", "--results-dir", str(tmp_path)]) == 0  # never fatal
    err = capsys.readouterr()
    lines = [line for line in err.err.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and bad.name in lines[0] and why in lines[0]
    assert "LoRA" in err.out  # the valid record, by its display name


def test_special_files_are_skipped_without_blocking(tmp_path: Path):
    store = _good_store(tmp_path)
    folder = tmp_path / "glue" / "rte" / "folder.json"
    folder.mkdir()
    os.mkfifo(tmp_path / "glue" / "rte" / "fifo.json")  # opening it to read would block for ever
    (tmp_path / "glue" / "rte" / "loop.json").symlink_to("loop.json")
    report = store.load(warn=False)
    why = dict((Path(p).name, w) for p, w in report.skipped)
    assert why == {"fifo.json": "not a regular file", "folder.json": "a folder, not a record file",
                   "loop.json": why["loop.json"]} and "unreadable" in why["loop.json"]
    assert len(report.records) == 1


def test_a_file_larger_than_a_record_is_skipped_unread(tmp_path: Path, monkeypatch):
    from harness.records import check as record_check

    store = _good_store(tmp_path)
    good = next(store.iter_paths()).stat().st_size
    monkeypatch.setattr(record_check, "MAX_RECORD_BYTES", good + 100)
    (tmp_path / "glue" / "rte" / "huge.json").write_text(json.dumps(make_record(seed=3)) + " " * (good + 200))
    report = store.load(warn=False)
    assert [Path(p).name for p, _ in report.skipped] == ["huge.json"] and "larger than" in report.skipped[0][1]


def test_the_dry_run_and_resume_read_bad_files_as_pending(fake_suite, tmp_path: Path, capsys):
    # one nested file where a planned record lives, one elsewhere in the store
    results = tmp_path / "results"
    argv = ["run", "--suite", "toy-faults", "--adapters", "head", "--tasks", "ok", "--seeds", "1", "--device", "cpu",
            "--results-dir", str(results), "--no-progress"]
    assert main([*argv, "--dry-run"]) == 0

    spec = _plan_one()
    path = ResultStore(results).path_for(spec.key)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"[" * DEEP + b"]" * DEEP)
    (results / "elsewhere.json").write_bytes(b'{"a":' * DEEP + b"1" + b"}" * DEEP)
    capsys.readouterr()
    assert main([*argv, "--dry-run"]) == 0
    assert "pending" in capsys.readouterr().out
    assert main(argv) == 0  # the run overwrites the corrupt record with a real one
    assert ResultStore(results).status(spec.key) == "success"


def test_the_app_renders_a_store_full_of_bad_files(tmp_path: Path, monkeypatch):
    from tests.test_app import render

    store = _good_store(tmp_path)
    for i, (name, content, _) in enumerate(NOT_RECORDS):
        (tmp_path / "glue" / "rte" / f"{i:02d}-{name}.json").write_bytes(content)
    store.write(make_record(seed=2, score=0.8))
    at = render(tmp_path, monkeypatch)  # asserts no exception
    text = " ".join(w.value for w in at.warning)
    assert f"Skipped {len(NOT_RECORDS)} files" in text
    assert "2 of 2 runs shown" in " ".join(c.value for c in at.text)


# ---------------------------------------------------------------------------------------------------
# (2) bad values in a usable record: missing, never counted
# ---------------------------------------------------------------------------------------------------

NAN_TEXT = "NaN"
BAD_VALUES = [  # (section, field, JSON text of the value, frame column or None)
    ("metrics", "score", '"0.9"', "score"),
    ("metrics", "score", "NaN", "score"),
    ("metrics", "score", "Infinity", "score"),
    ("metrics", "score", "-Infinity", "score"),
    ("metrics", "score", "1e999", "score"),
    ("metrics", "score", "9" * 5000, "score"),
    ("metrics", "score", "true", "score"),
    ("metrics", "score", "[0.9]", "score"),
    ("metrics", "score", '{"a": 0.9}', "score"),
    ("params", "adapter_trainable", '"73728"', "params_adapter"),
    ("params", "adapter_trainable", "-5", "params_adapter"),
    ("params", "head", "NaN", "params_head"),
    ("memory", "peak_bytes", '"1GB"', "peak_bytes"),
    ("memory", "peak_bytes", "Infinity", "peak_bytes"),
    ("timing", "train_seconds", "Infinity", "train_seconds"),
    ("timing", "train_seconds", "-1", "train_seconds"),
    ("timing", "mean_step_seconds", '"fast"', "mean_step_seconds"),
    ("timing", "samples_per_second", "NaN", "samples_per_second"),
    ("metrics", "primary", "5", "primary"),
    ("metrics", "best_epoch", "1.5", "best_epoch"),
    ("environment", "git_dirty", '"false"', "git_dirty"),
    ("environment", "git_commit", "[1]", "git_commit"),
    ("memory", "device", "{}", "memory_device"),
]


def _record_text(section: str, field: str, value_text: str, seed: int = 7) -> str:
    record = make_record(seed=seed, score=0.2)
    record[section][field] = "__BAD__"
    return json.dumps(record).replace('"__BAD__"', value_text)


@pytest.mark.parametrize("section,field,value_text,column", BAD_VALUES,
                         ids=[f"{s}.{f}={v[:12]}" for s, f, v, _ in BAD_VALUES])
def test_a_bad_value_is_read_as_missing_with_one_warning(section, field, value_text, column, tmp_path: Path):
    store = _good_store(tmp_path)  # seed 1 scores 0.6
    bad = tmp_path / "glue" / "rte" / "bad-value.json"
    bad.write_text(_record_text(section, field, value_text))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = store.load()
    mine = [str(w.message) for w in caught if issubclass(w.category, StoreWarning)]
    assert len(mine) == 1 and str(bad) in mine[0] and f"{section}.{field}" in mine[0]
    assert len(report.records) == 2  # kept: the rest of the record is good
    record = next(r for r in report.records if r["key"]["seed"] == 7)
    assert record[section][field] is None
    frame = aggregate.load_frame(report.records)
    row = frame[frame["seed"] == 7].iloc[0]
    assert row[column] is None or (isinstance(row[column], float) and math.isnan(row[column]))
    table = aggregate.leaderboard(frame)
    if column == "score":  # never counted: the mean is seed 1's alone
        assert table["n_seeds"].tolist() == [1] and table["score_mean"].tolist() == [0.6]
        assert table["n_runs"].tolist() == [2]


def test_non_finite_numbers_anywhere_become_null_and_the_loss_curve_keeps_good_points(tmp_path: Path):
    record = make_record(seed=3)
    record["loss_curve"] = [[1, 0.5], [2, "__NAN__"], [3, 0.4], "junk", [4]]
    record["metrics"]["final"] = {"accuracy": "__NAN__"}
    text = json.dumps(record).replace('"__NAN__"', NAN_TEXT)
    cleaned, notes = check_record(json.loads(text))
    assert cleaned["metrics"]["final"]["accuracy"] is None
    assert cleaned["loss_curve"] == [[1, 0.5], [3, 0.4]]
    assert any("loss_curve" in n for n in notes) and any("metrics.final.accuracy" in n for n in notes)
    assert check_record(make_record(seed=3)) == (make_record(seed=3), [])  # a good record is untouched


@pytest.mark.parametrize("field,value", [("singular_values", 5), ("m_eff", [1]), ("layer", "L3"), ("kind", 3)])
def test_bad_analysis_components_are_dropped_and_the_run_detail_still_draws(field, value):
    analysis = {"components": [{"module": "m", "kind": "query", "layer": 0, "component": "A",
                                "singular_values": [3.0, 1.0], "m_eff": {"1": 0.5}}]}
    record = make_record(seed=4, analysis=analysis)
    record["analysis"]["components"][0][field] = value
    cleaned, notes = check_record(json.loads(json.dumps(record)))
    assert cleaned["analysis"]["components"][0][field] is None and len(notes) == 1
    aggregate.singular_values_frame(cleaned)
    aggregate.m_eff_frame(cleaned)
    aggregate.analysis_matrices(cleaned)


def test_report_prints_one_warning_per_file_with_bad_values(tmp_path: Path, capsys):
    _good_store(tmp_path)
    record = make_record(seed=5)
    record["metrics"]["score"] = "__BAD__"
    record["params"]["head"] = "__BAD__"
    (tmp_path / "glue" / "rte" / "two-bad-values.json").write_text(
        json.dumps(record).replace('"__BAD__"', "Infinity"))
    assert main(["report", "--results-dir", str(tmp_path)]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and "metrics.score" in lines[0] and "params.head" in lines[0]


# ---------------------------------------------------------------------------------------------------
# (3) what would block a write: one error line at plan time, nothing trained
# ---------------------------------------------------------------------------------------------------


@pytest.fixture
def fake_suite(tmp_path_factory, monkeypatch):
    """The toy-faults suite (tests/toy_faults.py) registered for one test; its runs leave a marker in
    ``MARKERS`` when they start training."""
    import importlib

    markers = tmp_path_factory.mktemp("markers")
    monkeypatch.setenv("TOY_FAULTS_MARKERS", str(markers))
    monkeypatch.setenv("TOY_FAULTS_SLEEP", "0")
    module = importlib.import_module("tests.toy_faults")  # registers the suite
    module.MARKERS = markers
    yield module
    module.unregister()


def _plan_one(task: str = "ok", seed: int = 1):
    from harness.pipeline.plan import GridRequest, plan_grid

    return plan_grid(GridRequest(suite="toy-faults", adapters="head", tasks=task, seeds=(seed,), preset="cpu"),
                     cuda_available=False)[0]


def _run_argv(results: Path, *extra: str) -> list[str]:
    return ["run", "--suite", "toy-faults", "--adapters", "head", "--tasks", "ok", "--seeds", "1,2", "--device", "cpu",
            "--results-dir", str(results), "--no-progress", *extra]


def _record_path(results: Path, seed: int = 1) -> Path:

    return ResultStore(results).path_for(_plan_one(seed=seed).key)


def _block_with_folder(path: Path) -> str:
    path.mkdir(parents=True)
    return "is a folder"


def _block_with_symlink_loop(path: Path) -> str:
    path.parent.mkdir(parents=True)
    path.symlink_to(path.name)  # unreadable even for root
    return "cannot read"


def _block_with_fifo(path: Path) -> str:
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    return "not a regular file"


def _block_with_file_as_task_folder(path: Path) -> str:
    path.parent.parent.mkdir(parents=True)
    path.parent.write_text("not a folder")
    return "is not a folder"


def _block_with_file_as_suite_folder(path: Path) -> str:
    path.parent.parent.parent.mkdir(parents=True)
    path.parent.parent.write_text("not a folder")
    return "is not a folder"


BLOCKERS = [_block_with_folder, _block_with_symlink_loop, _block_with_fifo, _block_with_file_as_task_folder,
            _block_with_file_as_suite_folder]


@pytest.mark.parametrize("block", BLOCKERS, ids=[b.__name__[len("_block_with_"):] for b in BLOCKERS])
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_a_blocked_record_path_is_one_error_line_before_training(block, dry_run, fake_suite, tmp_path: Path, capsys):
    results = tmp_path / "results"
    path = _record_path(results, seed=2)
    message = block(path)
    code = main(_run_argv(results, *(["--dry-run"] if dry_run else [])))
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("preset: ")]
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert message in err[0] and str(results) in err[0], err
    assert not list(fake_suite.MARKERS.iterdir()), "nothing was trained"


def test_an_unwritable_record_folder_is_one_error_line(fake_suite, tmp_path: Path, capsys, monkeypatch):
    """Root passes every permission check, so the refusal of the folder (EACCES, EROFS) is injected
    where the probe writes."""
    import tempfile

    results = tmp_path / "results"
    task_folder = _record_path(results).parent
    task_folder.mkdir(parents=True)
    real = tempfile.mkstemp

    def refuse(*args, **kwargs):
        if Path(kwargs.get("dir") or "") == task_folder:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert main(_run_argv(results)) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("preset: ")]
    assert len(err) == 1 and f"cannot write records in {task_folder}" in err[0] and "Permission denied" in err[0]
    assert not list(fake_suite.MARKERS.iterdir())


def test_a_readable_record_and_missing_folders_do_not_block(fake_suite, tmp_path: Path):
    results = tmp_path / "results"
    store = ResultStore(results)

    keys = [_plan_one(seed=s).key for s in (1, 2)]
    assert store.write_blockers(keys) == []  # nothing exists yet: the folders will be created
    assert not results.exists()  # the probe created nothing
    store.write({**make_record(seed=1), "key": keys[0], "run_id": "x"})
    assert store.write_blockers(keys) == []


# ---------------------------------------------------------------------------------------------------
# (4) a write that fails anyway (full disk): kept elsewhere, the grid goes on, the exit code says so
# ---------------------------------------------------------------------------------------------------


def _disk_full_for(monkeypatch, seeds: set[int]) -> None:
    real = ResultStore.write

    def write(self, record):
        if record["key"]["seed"] in seeds:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, record)

    monkeypatch.setattr(ResultStore, "write", write)


def test_a_full_disk_keeps_the_record_in_unsaved_and_the_grid_goes_on(fake_suite, tmp_path: Path, monkeypatch, capsys):
    results = tmp_path / "results"
    _disk_full_for(monkeypatch, {1})
    assert main(_run_argv(results)) == 1  # non-zero: a record is not where it belongs
    out = capsys.readouterr().out
    kept = results / UNSAVED_DIR / _record_path(results).relative_to(results)
    assert "[unsaved] toy-faults/ok/head/" in out and str(kept) in out and "No space left on device" in out
    assert "ran 2 (success=2), unsaved 1" in out
    record = json.loads(kept.read_text())
    assert record["status"] == "success" and record["metrics"]["score"] is not None  # the result is not lost
    store = ResultStore(results)
    assert [r["key"]["seed"] for r in store.records(warn=False)] == [2]  # .unsaved is never read as the store
    assert store.status(record["key"]) is None  # so the next invocation runs it again


def test_when_unsaved_cannot_be_written_either_the_temp_folder_then_stderr(fake_suite, tmp_path: Path, monkeypatch,
                                                                           capsys):
    import tempfile
    import types

    from harness.records import store as store_module

    def store_tempdir(path: Path) -> None:  # the temporary folder as the store sees it (not the runs)
        monkeypatch.setattr(store_module, "tempfile", types.SimpleNamespace(mkstemp=tempfile.mkstemp,
                                                                             gettempdir=lambda: str(path)))

    results = tmp_path / "results"
    results.mkdir()
    (results / UNSAVED_DIR).write_text("a file where the side folder would go")
    store_tempdir(tmp_path / "tmp")
    _disk_full_for(monkeypatch, {1, 2})
    from harness.grid.run_grid import run_grid
    from harness.pipeline.runner import ExecutionOptions

    specs = [_plan_one(seed=1), _plan_one(seed=2)]
    lines: list[str] = []
    outcome = run_grid(specs, ResultStore(results), ExecutionOptions(device="cpu", progress=False), echo=lines.append)
    assert outcome.ran == 2 and outcome.unsaved == 2
    kept = sorted((tmp_path / "tmp").rglob("*.json"))
    assert len(kept) == 2 and all(json.loads(p.read_text())["status"] == "success" for p in kept)

    store_tempdir(results / UNSAVED_DIR)  # a file: cannot hold folders
    capsys.readouterr()
    outcome = run_grid(specs[:1], ResultStore(results), ExecutionOptions(device="cpu", progress=False),
                       force=True, echo=lines.append)
    assert outcome.unsaved == 1 and "nor anywhere else" in lines[-1]
    printed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert len(printed) == 1 and json.loads(printed[0])["status"] == "success"  # printed, so still not lost


def test_a_record_json_cannot_hold_is_kept_as_text_and_the_grid_goes_on(fake_suite, tmp_path: Path, monkeypatch):
    from harness.grid.run_grid import run_grid
    from harness.pipeline import runner
    from harness.pipeline.runner import ExecutionOptions

    real = runner.execute_run

    def with_an_odd_value(*args, **kwargs):
        record = real(*args, **kwargs)
        record["data_info"] = {"odd": object()}  # what a suite's info could carry by mistake
        return record

    monkeypatch.setattr(runner, "execute_run", with_an_odd_value)
    results = tmp_path / "results"
    lines: list[str] = []
    outcome = run_grid([_plan_one(seed=1), _plan_one(seed=2)], ResultStore(results),
                       ExecutionOptions(device="cpu", progress=False), echo=lines.append)
    assert outcome.ran == 2 and outcome.unsaved == 2 and "not JSON serialisable" in lines[0]
    kept = sorted((results / UNSAVED_DIR).rglob("*.json"))
    assert len(kept) == 2 and json.loads(kept[0].read_text())["data_info"]["odd"].startswith("<object")


def test_a_parallel_driver_counts_unsaved_results():
    from harness.grid.executors import _reporter
    from harness.grid.run_grid import GridOutcome, RunResult

    outcome, lines = GridOutcome(planned=2), []
    report = _reporter(outcome, lines.append, None)  # what the pool and Ray drivers call per finished run
    report(RunResult("a", "success", "[success] a\n[unsaved] a: ...", "/x", unsaved=True))
    report(RunResult("b", "success", "[success] b", "/y"))
    assert (outcome.ran, outcome.unsaved) == (2, 1) and "unsaved 1" in outcome.totals_line()


# ---------------------------------------------------------------------------------------------------
# (5) a record of a newer schema at a planned path: kept, skipped (even with --force), named
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_a_newer_schema_record_is_never_overwritten(force, fake_suite, tmp_path: Path, capsys):
    results = tmp_path / "results"
    path = _record_path(results)
    path.parent.mkdir(parents=True)
    newer = {**make_record(seed=1), "schema_version": SCHEMA_VERSION + 1, "something": "new"}
    path.write_text(json.dumps(newer))
    before = path.read_bytes()
    extra = ["--force"] if force else []
    assert main(_run_argv(results, *extra, "--dry-run")) == 0
    captured = capsys.readouterr()
    assert "newer schema version (kept, skip)" in captured.out
    assert f"warning: {path} holds a record of a newer schema version" in captured.err
    assert main(_run_argv(results, *extra)) == 0
    captured = capsys.readouterr()
    assert "planned 2, already done 1, ran 1 (success=1)" in captured.out
    assert path.read_bytes() == before
    report = ResultStore(results).load(warn=False)
    assert [why for p, why in report.skipped] == [
        f"schema_version {SCHEMA_VERSION + 1} is newer than this harness's {SCHEMA_VERSION}"]


# ---------------------------------------------------------------------------------------------------
# (6) modes: the process umask, like any file
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_records_and_report_tables_are_created_with_the_umask(umask, mode, tmp_path: Path):
    old = os.umask(umask)
    try:
        path = ResultStore(tmp_path / "store").write(make_record(seed=1))
        assert main(["report", "--results-dir", str(tmp_path / "store"), "--out", str(tmp_path / "tables")]) == 0
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode
    for table in ("leaderboard.csv", "leaderboard.md"):
        assert (tmp_path / "tables" / table).stat().st_mode & 0o777 == mode


def test_a_full_temporary_folder_fails_the_run_not_the_grid(fake_suite, tmp_path: Path, monkeypatch):
    import tempfile

    from harness.grid.run_grid import run_grid
    from harness.pipeline.runner import ExecutionOptions

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkdtemp", full)
    store = ResultStore(tmp_path / "results")
    outcome = run_grid([_plan_one(seed=1), _plan_one(seed=2)], store, ExecutionOptions(device="cpu", progress=False),
                       echo=lambda _: None)
    assert outcome.by_status == {"failed": 2}  # both recorded (and rerun next time), the grid went on
    assert all("No space left" in r["error"]["message"] for r in store.records(warn=False))
