"""``harness report`` (ranked tables from the store, no torch), ``reproduce`` and ``analyze``."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from harness.errors import HarnessError
from harness.untrusted import UnsafePathError, is_safe_filename, path_inside, terminal_text


def cmd_report(args: argparse.Namespace) -> int:
    # reads the store only (no torch): aggregate, stats and metrics are pure
    from harness import aggregate
    from harness.records.store import ResultStore

    formats = [f.strip() for f in str(args.format).split(",") if f.strip()]
    bad = [f for f in formats if f not in aggregate.REPORT_FORMATS]
    if bad or not formats:
        raise HarnessError(f"--format {args.format!r}: valid formats are {', '.join(aggregate.REPORT_FORMATS)}")
    from harness.records.stores import add_source, read_dirs, record_sources, source_name

    roots = read_dirs(args.results_dir, with_shipped=getattr(args, "with_shipped", False))
    if getattr(args, "with_shipped", False) and not args.results_dir:
        roots = [r for r in roots if r.is_dir()]  # no runs of your own yet: the shipped store alone
    missing = [r for r in roots if not r.is_dir()]
    if missing:
        hint = "" if args.results_dir else (" (your runs go there; add --with-shipped or --results-dir results "
                                            "for the shipped reference records)")
        raise HarnessError(f"--results-dir {missing[0]} does not exist{hint} (no tables written)")
    where = " + ".join(str(r) for r in roots)
    records, loaded_by_source = [], []
    for root in roots:
        loaded = ResultStore(root).load(warn=False)
        for line in loaded.warnings:  # one line per bad file; never fatal
            say(f"warning: {line}")
        records += loaded.records
        loaded_by_source.append((source_name(root), loaded.records))
        if len(roots) > 1:
            say(f"{len(loaded.records)} records from {root} (store {source_name(root)})")
    tuning = tuning_report(roots[0], records, args) if roots else {}
    if not records:
        if tuning:  # a folder with tuning studies only (no `run --tuned` yet): their plots and tables
            written = write_files_atomically(Path(args.out), tuning)
            say(f"wrote {len(written)} files to {args.out}: {', '.join(p.name for p in written)}")
            return 0
        raise HarnessError(f"--results-dir {where} holds no run record (no tables written)")
    root = where
    frame = add_source(aggregate.load_frame(records), record_sources(loaded_by_source))
    duplicates = frame.attrs.get("duplicates", [])
    if len(roots) > 1 and duplicates:  # the same run in two stores (e.g. a rerun of a shipped one): one line
        say(f"warning: {len(duplicates)} runs are recorded in more than one of {root}; each counted once "
            "(the latest record, named in the store column)")
        duplicates = []
    for duplicate in duplicates:
        say(f"warning: {duplicate} in {root} for one config and seed (a copy or a backup); counted once")
    if args.suite:
        frame = frame[frame["suite"] == args.suite]
        if frame.empty:
            raise HarnessError(f"--suite {args.suite}: no record of that suite in {root} (no tables written)")
    if args.baseline not in set(frame["adapter"]):
        say(f"warning: --baseline {args.baseline}: no run of that adapter in {root}; the -vs- tables are empty "
            f"(adapters: {', '.join(sorted(set(frame['adapter'])))})")
    files = aggregate.build_report(frame, baseline=args.baseline, formats=formats, display_names=display_names(),
                                   p_adjust=getattr(args, "p_adjust", "holm"), store_root=root)
    if "leaderboard.md" in files:  # escaped Markdown; no escape sequence reaches the terminal either
        print(terminal_text(files["leaderboard.md"]))
    if args.out:
        try:  # matching records to paper-table rows plans the rows (the suites' presets need torch)
            from harness.papers.reproduce import reproduction_files

            files.update(reproduction_files(records))
        except ImportError as exc:
            print(f"warning: no reproduce-<table>.csv written: planning the paper tables' rows needs {exc.name} "
                  "(the leaderboard tables need only pandas and scipy)", file=sys.stderr)
        files.update(tuning)
        written = write_files_atomically(Path(args.out), files)
        say(f"wrote {len(written)} files to {args.out}: {', '.join(p.name for p in written)}")
    return 0


def say(line: str) -> None:
    """One line on stderr, with what came from records or file names made safe for a terminal."""
    print(terminal_text(line), file=sys.stderr)


def display_names() -> dict[str, str]:
    """Adapter id -> ``Adapter.display_name`` for the tables; empty (the ids are printed) when the
    adapters cannot be imported here (they need torch; the leaderboard itself does not)."""
    try:
        import torch  # noqa: F401  (the adapter modules need it; a half-done discovery would hide them)

        from harness.registry import ADAPTERS

        ADAPTERS.discover()
        return {name: str(getattr(ADAPTERS.get(name), "display_name", "") or name) for name in ADAPTERS.names()}
    except ImportError:
        return {}




def tuning_report(root: Path, records: list, args: argparse.Namespace) -> dict[str, bytes | str]:
    """The tuning files (harness.tuning.plots) when ``root`` holds tuning data and ``--out`` is given;
    {} otherwise (and without matplotlib, with a warning: the tables need only pandas and scipy)."""
    from harness.aggregate import tuning_views

    if not tuning_views.has_tuning(root):
        return {}
    if not args.out:
        print(f"note: {root} holds tuning studies; pass --out DIR for their plots and budget tables "
              "(tuning-<suite>-<task>-lr.png, -expected-max.png, tuning-<suite>.csv)", file=sys.stderr)
        return {}
    frames = tuning_views.load_tuning(root, records)
    for path, why in frames["skipped"]:
        print(f"warning: skipped {path}: {why}", file=sys.stderr)
    if args.suite and not (frames["sensitivity"]["suite"] == args.suite).any() and \
            not (frames["budget"]["suite"] == args.suite).any():
        return {}
    try:
        from harness.tuning.plots import tuning_files
    except ImportError as exc:
        print(f"warning: no tuning plots written: they need {exc.name} (pip install matplotlib)", file=sys.stderr)
        return {}
    return tuning_files(frames, [args.suite] if args.suite else None)


def write_files_atomically(out: Path, files: dict[str, str] | dict[str, bytes | str]) -> list[Path]:
    """Each file written to a temporary file in ``out``, fsynced, then renamed over the old one: a
    report killed or failing at any point leaves every table either whole and old or whole and new.
    Text gets a final newline; bytes (the PNG plots) are written as they are."""
    import tempfile

    from harness.records.store import process_umask

    out.mkdir(parents=True, exist_ok=True)
    # every name checked before anything is written: an allowed file name that resolves inside ``out``
    # (names are built from records: harness.untrusted); a bad one writes nothing
    for name in files:
        if not is_safe_filename(name):
            raise UnsafePathError(f"refusing to write {terminal_text(name, keep_newlines=False)!r}: not a plain file "
                                  f"name (no tables written)")
        path_inside(out, name)
    written = []
    for name, text in files.items():
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{name}.", dir=out)
        try:
            os.chmod(tmp, 0o666 & ~process_umask())  # mkstemp's 0600 would hide the tables from others
            if isinstance(text, bytes):
                with os.fdopen(fd, "wb") as raw:
                    raw.write(text)
                    raw.flush()
                    os.fsync(raw.fileno())
            else:
                with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                    fh.write(text if text.endswith("\n") else text + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, out / name)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        written.append(out / name)
    return written


def cmd_reproduce(args: argparse.Namespace) -> int:
    from harness.cli.reproduce import cmd_reproduce as run_reproduce

    return run_reproduce(args)


def cmd_analyze(args: argparse.Namespace) -> int:
    from harness.cli.analyze import analyze_main

    argv = [args.run1, args.run2, "--max-rank", str(args.max_rank), "--space", args.space]
    argv += (["--module", args.module] if args.module else []) + (["--component", args.component] if args.component else [])
    argv += (["--per-module"] if args.per_module else []) + (["--json"] if args.json else [])
    return int(analyze_main(argv))
