"""``python -m harness records migrate DIR`` (harness/records/migrate.py, harness/cli/records.py): old records
brought to the current layout once, their identity and values untouched; the store's warning for old records."""

from __future__ import annotations

import copy
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest

from harness.cli.main import main
from harness.cli.records import annotations_of
from harness.records.migrate import UNIT_FIELDS, migrate_dir, migrate_record
from harness.records.record import SCHEMA_VERSION
from harness.records.store import ResultStore, StoreWarning
from harness.spec import RunSpec
from tests.record_factory import make_record

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
ADDED = ("preset_defaults", "preset_defaults_error", "caps")


def record_files(root: Path) -> list[Path]:
    """Every run record under a results folder: the store's and the tuning trials', not the choice files
    (results/tuning/choices: what a study chose, no run)."""
    choices = root / "tuning" / "choices"
    return sorted(p for p in root.rglob("*.json") if not p.is_relative_to(choices))


def store_files(root: Path) -> list[Path]:
    """The records the store reads (it never reads results/tuning)."""
    return [p for p in record_files(root) if not p.is_relative_to(root / "tuning")]


def as_version_1(record: dict[str, Any]) -> dict[str, Any]:
    """A record as a runner before the annotations wrote it: version 1, no preset annotations, no units."""
    old = {k: copy.deepcopy(v) for k, v in record.items() if k not in ADDED}
    old["schema_version"] = 1
    if isinstance(old.get("metrics"), dict):
        old["metrics"] = {k: v for k, v in old["metrics"].items() if k not in UNIT_FIELDS}
    return old


@pytest.fixture(scope="module")
def old_store(tmp_path_factory) -> Path:
    """Every shipped record, as version 1 without its annotations (what 44 of them were before migrating)."""
    root = tmp_path_factory.mktemp("old")
    for path in record_files(RESULTS):
        target = root / path.relative_to(RESULTS)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(as_version_1(json.loads(path.read_text(encoding="utf-8"))), indent=1) + "\n")
    return root


def test_every_shipped_record_is_current():
    files = record_files(RESULTS)
    assert files and all(json.loads(p.read_text())["schema_version"] == SCHEMA_VERSION for p in files)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreWarning)  # no "older schema" warning from the shipped store
        assert len(ResultStore(RESULTS).records()) == len(store_files(RESULTS))


def test_migrating_every_shipped_record_keeps_its_identity_and_values(old_store, tmp_path):
    work = tmp_path / "store"
    shutil.copytree(old_store, work)
    before = {p.relative_to(work): json.loads(p.read_text()) for p in work.rglob("*.json")}
    result = migrate_dir(work, annotations_of)
    assert not result.refused and len(result.changed) == len(before) and result.current == 0
    for rel, old in before.items():
        new = json.loads((work / rel).read_text())
        assert new["schema_version"] == SCHEMA_VERSION
        for name in ("run_id", "key", "spec", "status", "params", "timing", "environment", "finished_at"):
            assert new.get(name) == old.get(name), (rel, name)
        # the config hash the spec rebuilds to is the key's, before and after
        assert RunSpec.from_dict(new["spec"]).config_hash == old["key"]["config_hash"] == new["key"]["config_hash"]
        # only the annotations are added; every other field is the old one
        assert set(new) - set(old) == {"preset_defaults", "caps"}, rel
        assert {k: v for k, v in new["metrics"].items() if k not in UNIT_FIELDS} == old["metrics"], rel
        assert new["metrics"]["unit"] and set(new["metrics"]["units"]) >= {old["metrics"]["primary"]}
        shipped = json.loads((RESULTS / rel).read_text())
        assert new["metrics"]["units"] == shipped["metrics"]["units"]  # the units shipped records carry
        assert new["caps"]["applied"] == shipped["caps"]["applied"]


def test_a_second_migration_changes_nothing_and_says_so(old_store, tmp_path, capsys):
    work = tmp_path / "store"
    shutil.copytree(old_store, work)
    n = sum(1 for _ in work.rglob("*.json"))
    assert main(["records", "migrate", str(work)]) == 0
    assert capsys.readouterr().out == f"migrated {n} records in {work} to schema version {SCHEMA_VERSION} (0 were current already)\n"
    texts = {p: p.read_bytes() for p in work.rglob("*.json")}
    assert main(["records", "migrate", str(work)]) == 0
    assert capsys.readouterr().out == f"nothing to migrate: the {n} records in {work} are at schema version {SCHEMA_VERSION}\n"
    assert {p: p.read_bytes() for p in work.rglob("*.json")} == texts
    assert not list(work.rglob(".tmp-*"))  # written atomically: no temporary file is left


def test_a_current_record_with_annotations_only_changes_its_version():
    record = make_record(annotations={"preset_defaults_error": "ImportError: no plug-in",
                                      "metrics": {"unit": None}})
    old = {**record, "schema_version": 1}
    new = migrate_record(old, lambda r: pytest.fail("nothing to rebuild"))
    assert new == {**old, "schema_version": SCHEMA_VERSION}
    assert migrate_record(new, annotations_of) is None


def test_records_it_cannot_migrate_are_named_and_left_alone(tmp_path, capsys):
    good = as_version_1(make_record(seed=1))
    unknown = as_version_1(make_record(suite="no-such-suite", seed=2))
    newer = {**make_record(seed=3), "schema_version": SCHEMA_VERSION + 1}
    store = tmp_path / "store"
    paths = {}
    for name, data in (("good", good), ("unknown", unknown), ("newer", newer)):
        paths[name] = store / "glue" / "rte" / f"{name}.json"
        paths[name].parent.mkdir(parents=True, exist_ok=True)
        paths[name].write_text(json.dumps(data))
    (store / "glue" / "rte" / "foreign.json").write_text('{"hello": 1}')
    trials = store / "tuning" / "trials" / "glue" / "rte" / "trial.json"  # a tuning trial store is migrated too
    trials.parent.mkdir(parents=True)
    trials.write_text(json.dumps(as_version_1(make_record(seed=4))))
    kept = {p: p.read_bytes() for p in (paths["unknown"], paths["newer"])}
    assert main(["records", "migrate", str(store)]) == 1
    out, err = capsys.readouterr()
    assert out == f"migrated 2 records in {store} to schema version {SCHEMA_VERSION} (0 were current already)\n"
    lines = err.splitlines()
    assert len(lines) == 3 and all(line.startswith("refused ") and line.endswith("(left as it is)") for line in lines)
    assert any(str(paths["unknown"]) in line and "no-such-suite" in line for line in lines)
    assert any(str(paths["newer"]) in line and "newer" in line for line in lines)
    assert any("foreign.json" in line and "missing 'schema_version'" in line for line in lines)
    assert {p: p.read_bytes() for p in kept} == kept
    assert json.loads(trials.read_text())["schema_version"] == SCHEMA_VERSION
    migrated = json.loads(paths["good"].read_text())
    assert migrated["preset_defaults"]["suite_tasks"] and migrated["metrics"]["unit"] == "fraction"


def test_the_store_warns_once_per_read_for_old_records(tmp_path, capsys):
    store = ResultStore(tmp_path)
    for seed in (1, 2, 3):
        store.write(as_version_1(make_record(seed=seed)))
    store.write(make_record(seed=4))
    with pytest.warns(StoreWarning) as caught:
        records = store.records()
    assert len(records) == 4  # read as far as they go
    assert len(caught) == 1 and f"python -m harness records migrate {tmp_path}" in str(caught[0].message)
    assert "3 records" in str(caught[0].message)
    report = store.load(warn=False)
    assert report.warnings == [report.older_warning]
    assert main(["report", "--results-dir", str(tmp_path)]) == 0
    assert sum("records migrate" in line for line in capsys.readouterr().err.splitlines()) == 1
