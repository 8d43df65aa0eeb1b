"""``run --config FILE``: a JSON object of run options (keys as flag names), each checked against the
JSON type its flag takes and given to the parsed arguments as the command line would; flags win.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import HarnessError


def _short(path: str) -> str:
    from harness.errors import short_path

    return short_path(path)


def _load_config_file(path: str, parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    try:
        raw = Path(path).read_bytes()
        data = json.loads(raw.decode("utf-8-sig"))
    except OSError as exc:
        raise HarnessError(f"cannot read config file {_short(path)}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise HarnessError(f"cannot read config file {path}: not UTF-8 text (a JSON object is expected)") from None
    except json.JSONDecodeError as exc:
        raise HarnessError(f"cannot read config file {path}: {exc}") from None
    except RecursionError:
        raise HarnessError(f"cannot read config file {path}: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise HarnessError(f"config file {path} must hold a JSON object")
    run_parser = parser._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    actions = {a.dest: a for a in run_parser._actions}
    known = set(actions)
    for key, value in data.items():
        dest = key.replace("-", "_")
        if dest not in known or dest in ("config", "help"):
            from harness.errors import closest

            hint = closest(dest, known)
            raise HarnessError(f"unknown key '{key}' in config file {path}" + (f"; did you mean '{hint}'?" if hint else ""))
        value = _config_value(dest, value, actions[dest], lambda want, k=key, v=value: HarnessError(
            f"config file {path}: key '{k}' must be {want}, got {json.dumps(v)[:80]}"))
        if value is None:  # null: as if the key were absent
            continue
        current = getattr(args, dest)
        if current == run_parser.get_default(dest):  # the command line wins over the file
            setattr(args, dest, value)


# keys of a config file by the JSON type they take (the rest of the run flags take a string)
_CONFIG_INT_KEYS = ("rank", "threads", "workers")
_CONFIG_LIST_KEYS = ("tasks", "adapters", "targets", "seeds")  # a string (comma list) or a JSON list


def _config_value(dest: str, value: Any, action: argparse.Action, bad: Callable[[str], HarnessError]) -> Any:
    """A config-file value checked against its JSON type and given as the command line would give it
    (a string; a bool for switches; a list for --opt/--suite-opt). A JSON true is never the string
    "false": switches take JSON booleans only, numbers take JSON numbers (or their text)."""
    from harness.config import field_types
    from harness.spec import TrainConfig

    if value is None:
        return None
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise bad("true or false (a JSON boolean)")
        return value
    if dest in ("opt", "suite_opt"):
        if isinstance(value, dict):  # {"split": 4} -> ["split=4"]
            items = []
            for k, v in value.items():
                if not _scalar(v):
                    raise bad("an object of KEY: scalar values or a list of \"KEY=VALUE\" strings")
                items.append(f"{k}={_text(v)}")
            return items
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise bad("a list of \"KEY=VALUE\" strings or an object")
    if dest in _CONFIG_LIST_KEYS:
        item_ok = (lambda v: isinstance(v, int) and not isinstance(v, bool)) if dest == "seeds" else (
            lambda v: isinstance(v, str))
        if isinstance(value, list):
            if not value or not all(item_ok(v) for v in value):
                raise bad("a non-empty list of " + ("integers" if dest == "seeds" else "strings") + " or a comma list")
            return ",".join(str(v) for v in value)
        if isinstance(value, str) or (dest == "seeds" and item_ok(value)):
            return str(value)
        raise bad("a comma-list string or a JSON list")
    train_types = field_types(TrainConfig)
    if dest in _CONFIG_INT_KEYS or (dest in train_types and "int" in str(train_types[dest])):
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str):  # the command line's text, checked where the flag's text is
            return value
        raise bad("an integer")
    if dest == "alpha" or dest in train_types:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return repr(float(value)) if isinstance(value, float) else str(value)
        if isinstance(value, str):
            return value
        raise bad("a number")
    if not isinstance(value, str):
        raise bad("a string")
    return value


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)
