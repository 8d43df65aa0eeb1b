"""The result store: a folder of JSON records. Pure Python, no torch.

Writes are atomic (a temporary file in the same folder, fsync, then ``os.replace``), so a reader or a
killed writer never leaves a partial record, and two writers of one run leave one whole record (the last
replace wins; there is one file per key, so a run can never be recorded twice). Temporary files are
named ``.tmp-<pid>@<host>@...`` and are never read as records; ``clean_stale_temps`` removes those whose
writer is gone (killed mid-write). Records are created with the process umask, like any file (so a
leaderboard run by another account can read them when the umask allows it).

Reading goes through ``harness.records.check``: a file that is not a record (corrupt, binary, nested too
deep, a required field of the wrong type) is skipped with one warning that names it, so one foreign or
corrupt file cannot hide the rest; bad values in a usable record become None (missing, never counted),
with one warning for the file. Files under hidden folders (``.unsaved/``) are not read.

Writes that would fail are found before a grid trains (``write_blockers``); a write that fails anyway
(a full disk) keeps the record in ``.unsaved/`` under the results folder or in the temporary folder
(``keep_unsaved``), so a finished run is never lost. A record of a newer schema version is never
overwritten (``NEWER_SCHEMA``).

Resume: a run is done when its record says success, diverged or oom (rerunning would give the same
answer); failed and cancelled runs, and corrupt records, are run again by the next invocation.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.records.check import NewerSchemaError, is_older_schema, notes_text, read_record_file
from harness.records.record import SCHEMA_VERSION, RecordError, RunRecord, dumps, record_relpath, sanitize
from harness.status import DONE_STATUSES  # done for resume; failed and cancelled are rerun

TEMP_PREFIX = ".tmp-"
TUNING_DIR = "tuning"  # harness.tuning.study.TUNING_DIR: a results folder's tuning studies, trials and choices
# the exact name ``write`` gives its temporary file: .tmp-<pid>@<host>@<mkstemp's 8 characters>.json
TEMP_NAME = re.compile(r"\.tmp-(\d+)@([^@/]+)@([a-z0-9_]{8})\.json")
# what ``status`` says for a record a newer harness wrote: skipped by a grid, even with --force
NEWER_SCHEMA = "newer-schema"
# where a record goes when its own path cannot be written (hidden: never read as a record)
UNSAVED_DIR = ".unsaved"
# a temporary file whose writer we cannot check (another host, an old name) is stale after this long
STALE_TEMP_SECONDS = 24 * 3600


# folders at a store's root where run --report-to writes its trackers' logs (harness.grid.tracking)
TRACKER_DIRS = ("tensorboard", "wandb", "mlruns")


class StoreWarning(UserWarning):
    pass


@dataclass
class LoadReport:
    records: list[RunRecord] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why): files that are not records
    cleaned: list[tuple[str, str]] = field(default_factory=list)  # (path, which values were set to None)
    older: list[str] = field(default_factory=list)  # records of an older schema version (read as far as they go)
    root: str = ""

    @property
    def warnings(self) -> list[str]:
        """One line per file that was skipped or had values dropped, in path order; then one line for
        all the records of an older schema version."""
        lines = [(p, f"skipped {p}: {why}") for p, why in self.skipped]
        lines += [(p, f"{p}: values ignored (read as missing): {why}") for p, why in self.cleaned]
        return [line for _, line in sorted(lines)] + ([self.older_warning] if self.older else [])

    @property
    def older_warning(self) -> str:
        return (f"{len(self.older)} records in {self.root or 'the store'} are of an older schema version than "
                f"{SCHEMA_VERSION} (read as far as they go): python -m harness records migrate {self.root or 'DIR'}")


class ResultStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path_for(self, key: Mapping[str, Any]) -> Path:
        return self.root / record_relpath(key)

    def exists(self, key: Mapping[str, Any]) -> bool:
        return self.path_for(key).is_file()

    def get(self, key: Mapping[str, Any]) -> RunRecord | None:
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            return read_record_file(path)[0]
        except RecordError:
            return None

    def status(self, key: Mapping[str, Any]) -> str | None:
        """The recorded status of a run, ``NEWER_SCHEMA`` for a record of a newer harness, or None when
        it has no (valid) record."""
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            return str(read_record_file(path)[0]["status"])
        except NewerSchemaError:
            return NEWER_SCHEMA
        except RecordError:
            return None

    def is_complete(self, key: Mapping[str, Any]) -> bool:
        """A run counts as done when its record's status is in DONE_STATUSES; failed and cancelled
        runs (and unreadable records) are run again."""
        return self.status(key) in DONE_STATUSES

    def write(self, record: RunRecord) -> Path:
        path = self.path_for(record["key"])
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, dumps(sanitize(record)))
        return path

    def iter_paths(self) -> Iterator[Path]:
        if not self.root.is_dir():
            return
        for path in sorted(self.root.rglob("*.json")):
            # hidden folders, and a saved run's folder (<record>.adapter/, harness.pipeline.saved_run) hold no record;
            # tuning/ holds a study's trials and choices (harness/tuning/study.py): never leaderboard records
            parts = path.relative_to(self.root).parts[:-1]
            hidden = any(part.startswith(".") or part.endswith(".adapter") for part in parts) or (
                bool(parts) and parts[0] in (*TRACKER_DIRS, TUNING_DIR))  # run --report-to's logs (harness.grid.tracking)
            if not path.name.startswith(TEMP_PREFIX) and not hidden:
                yield path

    def clean_stale_temps(self, *, now: float | None = None) -> list[Path]:
        """Remove temporary files left by writers that died mid-write (kill -9, a lost node). A file
        of a live writer on this host is kept: deleting it would make that writer's replace fail."""
        if not self.root.is_dir():
            return []
        removed: list[Path] = []
        uid = os.getuid() if hasattr(os, "getuid") else None
        for path in self.root.rglob(f"{TEMP_PREFIX}*"):
            # only the store's own temporary files: their exact name (``write``'s mkstemp pattern), a regular
            # file (not a link), owned by this account; a user's ".tmp-notes.json" is never touched
            if not TEMP_NAME.fullmatch(path.name):
                continue
            try:
                info = path.lstat()
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode) or (uid is not None and info.st_uid != uid):
                continue
            if temp_is_stale(path.name, info.st_mtime, now=now):
                with _suppress():
                    path.unlink()
                    removed.append(path)
        return removed

    def load(self, *, warn: bool = True) -> LoadReport:
        report = LoadReport(root=str(self.root))
        for path in self.iter_paths():
            try:
                record, notes = read_record_file(path)
            except RecordError as exc:
                report.skipped.append((str(path), str(exc)))
                if warn:
                    warnings.warn(f"skipped {path}: {exc}", StoreWarning, stacklevel=2)
                continue
            report.records.append(record)
            if is_older_schema(record):
                report.older.append(str(path))
            if notes:
                report.cleaned.append((str(path), notes_text(notes)))
                if warn:
                    warnings.warn(f"{path}: values ignored (read as missing): {notes_text(notes)}", StoreWarning,
                                  stacklevel=2)
        if report.older and warn:  # one warning per read, not one per record
            warnings.warn(report.older_warning, StoreWarning, stacklevel=2)
        return report

    def records(self, *, warn: bool = True) -> list[RunRecord]:
        return self.load(warn=warn).records


    # -- before and after a grid's writes --------------------------------------------------------------

    def write_blockers(self, keys: Iterable[Mapping[str, Any]]) -> list[str]:
        """What would make ``write`` fail (or overwrite what it cannot read) for these runs, one line
        each: a folder or a non-regular file at a record's path, an existing file that cannot be read,
        a record folder that cannot be created or written to. Checked by writing (a probe file per
        folder), not with os.access, which root passes and a read-only mount fails only on write."""
        problems: list[str] = []
        probed: dict[Path, str | None] = {}
        for key in keys:
            path = self.path_for(key)
            problem = _path_problem(path)
            if problem is None:
                folder = _nearest_existing(path.parent)
                if folder not in probed:
                    probed[folder] = _folder_problem(folder, path.parent)
                problem = probed[folder]
            if problem is not None and problem not in problems:
                problems.append(problem)
        return problems

    def newer_records(self, keys: Iterable[Mapping[str, Any]]) -> list[Path]:
        """Paths of these runs that hold a record of a newer schema version (never overwritten)."""
        return [self.path_for(k) for k in keys if self.status(k) == NEWER_SCHEMA]

    def keep_unsaved(self, record: RunRecord) -> Path | None:
        """Write a record whose own path could not be written somewhere else: ``.unsaved/`` under the
        results folder, else the temporary folder. None when neither can be written."""
        relpath = record_relpath(record["key"])
        try:
            text = dumps(sanitize(record))
        except (TypeError, ValueError):  # a value JSON cannot hold: kept as its text
            text = json.dumps(sanitize(record), indent=1, default=str) + "\n"
        for base in (self.root / UNSAVED_DIR, Path(tempfile.gettempdir()) / f"harness-unsaved-{os.getuid()}"):
            target = base / relpath
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
            except OSError:
                with _suppress():
                    target.unlink()  # a partial copy would look like a record
                continue
            return target
        return None


def write_text_atomically(path: Path, text: str) -> None:
    """``text`` into ``path`` through a temporary file in its folder, fsynced, then renamed over it: a
    reader or a killed writer never sees a partial record."""
    # the writer's pid and host in the name let clean_stale_temps tell a dead writer from a live one
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}@{_host()}@", suffix=".json", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~process_umask())  # mkstemp makes 0600; a record is an ordinary file
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with _suppress():
            os.unlink(tmp)
        raise


def _path_problem(path: Path) -> str | None:
    if not os.path.lexists(path):
        return None
    try:
        info = os.stat(path)
    except OSError as exc:
        return f"cannot read {path} ({exc.strerror or exc}): fix it or remove it; a file there is not overwritten unread"
    if stat.S_ISDIR(info.st_mode):
        return f"{path} is a folder, so the run's record cannot be written there: move it away"
    if not stat.S_ISREG(info.st_mode):
        return f"{path} is not a regular file, so the run's record cannot be written there: remove it"
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        return f"cannot read {path} ({exc.strerror or exc}): fix it or remove it; a file there is not overwritten unread"
    return None


def _nearest_existing(folder: Path) -> Path:
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


def _folder_problem(existing: Path, wanted: Path) -> str | None:
    if not existing.is_dir():
        return f"cannot create the record folder {wanted}: {existing} is not a folder"
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=existing)
    except OSError as exc:
        return f"cannot write records in {wanted} (creating a file in {existing}: {exc.strerror or exc})"
    os.close(fd)
    os.unlink(probe)
    return None


def process_umask() -> int:
    """The process umask, read without changing it where Linux shows it (os.umask sets it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


def _host() -> str:
    return socket.gethostname().replace("@", "_") or "localhost"


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def temp_is_stale(name: str, mtime: float, *, now: float | None = None) -> bool:
    """Whether a temporary file ``.tmp-<pid>@<host>@...`` belongs to a writer that is gone: a dead pid
    on this host, or (unknown writer) older than STALE_TEMP_SECONDS."""
    now = time.time() if now is None else now
    match = TEMP_NAME.fullmatch(name)
    if match is None:  # not one of ours: never stale, never removed
        return False
    if match.group(2) == _host():
        return not _pid_alive(int(match.group(1)))
    return now - mtime > STALE_TEMP_SECONDS


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
