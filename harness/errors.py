"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HarnessError(Exception):
    """Bad input or a missing resource, detected before any training starts."""


class UnknownNameError(HarnessError, KeyError):
    """A name that is not in a registry or catalogue."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        self.kind, self.name, self.known = kind, name, sorted(known)
        super().__init__(unknown_name_message(kind, name, self.known))

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


def closest(name: str, known: Iterable[str]) -> str | None:
    """The closest known name, or None when nothing is reasonably close."""
    known = list(known)
    matches = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    if not matches:
        lowered = {k.lower().replace("_", "-"): k for k in known}
        matches = [lowered[m] for m in difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.4)]
    return matches[0] if matches else None


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    hint = closest(name, known)
    did_you_mean = f"; did you mean '{hint}'?" if hint else ""
    return f"unknown {kind} '{name}'{did_you_mean} Known {kind}s: {', '.join(known) or '(none)'}"


def short_path(path: object, limit: int = 120) -> str:
    """A path for an error line: a very long one shows its start and end only."""
    text = str(path)
    return text if len(text) <= limit else f"{text[:60]}...{text[-40:]} ({len(text)} characters)"


def path_error(exc: OSError) -> str:
    """'cannot use <path>: File name too long (ENAMETOOLONG)' for any error the OS gives about a path."""
    import errno

    name = errno.errorcode.get(exc.errno or 0, "")
    why = f"{exc.strerror or type(exc).__name__}" + (f" ({name})" if name else "")
    paths = [p for p in (exc.filename, exc.filename2) if p is not None]
    if not paths:
        return f"{why}: {str(exc)[:200]}"
    return f"cannot use {' -> '.join(short_path(p) for p in paths)}: {why}"
