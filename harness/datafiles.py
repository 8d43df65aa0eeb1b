"""Reading a suite's local data files so that a malformed one is one error line, not a traceback.

``read_checked`` runs a reader and turns what a bad file makes it raise (not UTF-8, torn or deeply nested
JSON, a truncated gzip, a missing key, a wrong type) into a HarnessError naming the file; ``cached`` keeps
a reader's result per file identity (path, size, mtime), so the plan-time check reads each file once and
the runs of the process reuse it.
"""

from __future__ import annotations

import json
import zlib
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from harness.errors import HarnessError

T = TypeVar("T")
CACHE_ENTRIES = 64
_CACHE: OrderedDict[tuple[Any, ...], Any] = OrderedDict()


def read_checked(path: Path, read: Callable[[], T], what: str) -> T:
    """``read()`` with the errors of a malformed ``path`` as one line: '<path>: <what> ... (<why>)'."""
    try:
        return read()
    except HarnessError:
        raise
    except UnicodeDecodeError as exc:
        raise HarnessError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                           f"expected {what}") from None
    except json.JSONDecodeError as exc:
        raise HarnessError(f"{path}: not JSON at line {exc.lineno} column {exc.colno} ({exc.msg}); expected {what}") from None
    except RecursionError:
        raise HarnessError(f"{path}: JSON nested too deeply; expected {what}") from None
    except (OSError, EOFError, zlib.error) as exc:  # unreadable, a folder, a truncated or non-gzip .gz
        raise HarnessError(f"cannot read {path} ({type(exc).__name__}: {_first_line(exc)}); expected {what}") from None
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise HarnessError(f"{path}: not {what} ({type(exc).__name__}: {_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else "no detail")[:200]


def read_json(path: Path, what: str) -> Any:
    return read_checked(path, lambda: json.loads(path.read_bytes().decode("utf-8-sig")), what)


def fail(path: Path, where: str, problem: str) -> HarnessError:
    """'<path>, <where>: <problem>' (where: 'line 12', 'annotations[3]', ...)."""
    return HarnessError(f"{path}, {where}: {problem}")


def require_fields(record: Any, fields: dict[str, type | tuple[type, ...]], path: Path, where: str) -> dict[str, Any]:
    """``record`` is a JSON object with these fields of these types (bool is not an int here)."""
    if not isinstance(record, dict):
        raise fail(path, where, f"expected a JSON object, got {type(record).__name__}")
    for name, types in fields.items():
        if name not in record:
            raise fail(path, where, f"missing '{name}'")
        value = record[name]
        wanted = types if isinstance(types, tuple) else (types,)
        if not isinstance(value, wanted) or (isinstance(value, bool) and bool not in wanted):
            names = " or ".join(t.__name__ for t in wanted)
            raise fail(path, where, f"'{name}' must be {names}, got {json.dumps(value)[:60]}")
    return record


def cached(paths: tuple[Path, ...], tag: str, read: Callable[[], T]) -> T:
    """``read()`` once per identity of ``paths`` (and ``tag``) in this process."""
    key: list[Any] = [tag]
    for path in paths:
        st = path.stat()
        key.append((str(path.resolve()), st.st_size, st.st_mtime_ns))
    ident = tuple(key)
    if ident in _CACHE:
        _CACHE.move_to_end(ident)
        return _CACHE[ident]
    value = read()
    _CACHE[ident] = value
    while len(_CACHE) > CACHE_ENTRIES:
        _CACHE.popitem(last=False)
    return value


def clear_cache() -> None:
    _CACHE.clear()
