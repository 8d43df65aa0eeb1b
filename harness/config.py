"""Typed option parsing shared by adapter configs and training configs.

Options arrive as strings from the CLI (``--opt split=8``) or as JSON values from config files. They are
coerced by the dataclass field's annotation, and an unknown key is an error that names the closest key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from harness.errors import HarnessError, closest

C = TypeVar("C")
# Every integer and float option of a config (adapter, suite, training) is within these bounds, so no
# value overflows a C integer or a float computation later, in a run; fields check tighter ranges.
INT_OPTION_RANGE = (-(2**31), 2**31 - 1)
FLOAT_OPTION_LIMIT = 1e9


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def coerce(name: str, value: Any, tp: Any) -> Any:
    """Convert a CLI string (or JSON value) to the annotated type, or raise a one-line HarnessError."""
    inner, optional = _strip_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        if optional:
            return None
        raise HarnessError(f"option '{name}' needs a value")
    origin = typing.get_origin(inner)
    try:
        if origin is tuple:
            args = typing.get_args(inner)
            item_tp = args[0] if args else str
            if isinstance(value, str):
                items = [v.strip() for v in value.split(",") if v.strip()]
            else:  # a JSON list, or one JSON number for a one-item tuple
                items = list(value) if isinstance(value, (list, tuple)) else [value]
            return tuple(coerce(name, v, item_tp) for v in items)
        if inner is bool:
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if inner is int:
            if isinstance(value, bool):
                raise ValueError(value)
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError(value)
                return int(value)
            number = int(str(value).strip()) if not isinstance(value, int) else value
            if not INT_OPTION_RANGE[0] <= number <= INT_OPTION_RANGE[1]:
                raise HarnessError(f"option '{name}' must be an integer in [{INT_OPTION_RANGE[0]}, {INT_OPTION_RANGE[1]}], "
                                   f"got {value!r}")
            return number
        if inner is float:
            if isinstance(value, bool):
                raise ValueError(value)
            number = float(value)
            if not math.isfinite(number):  # nan/inf pass every range check (nan <= 0 is False)
                raise HarnessError(f"option '{name}' must be a finite number, got {value!r}")
            if abs(number) > FLOAT_OPTION_LIMIT:
                raise HarnessError(f"option '{name}' must be a number in [-{FLOAT_OPTION_LIMIT:g}, {FLOAT_OPTION_LIMIT:g}], "
                                   f"got {value!r}")
            return number
        if inner is str:
            return str(value)
    except (TypeError, ValueError):
        wanted = getattr(inner, "__name__", str(inner))
        raise HarnessError(f"option '{name}' must be {wanted}, got {value!r}") from None
    return value


def build(cls: type[C], options: Mapping[str, Any], what: str) -> C:
    """Instantiate a dataclass from loosely typed options; unknown keys are errors."""
    types_ = field_types(cls)
    kwargs: dict[str, Any] = {}
    for key, value in options.items():
        norm = key.replace("-", "_")
        if norm not in types_:
            hint = closest(norm, types_)
            did_you_mean = f"; did you mean '{hint}'?" if hint else ""
            raise HarnessError(
                f"unknown option '{key}' for {what}{did_you_mean or '.'} Valid options: {', '.join(sorted(types_)) or '(none)'}"
            )
        kwargs[norm] = coerce(norm, value, types_[norm])
    try:
        return cls(**kwargs)
    except HarnessError:
        raise
    except (TypeError, ValueError) as exc:
        raise HarnessError(f"invalid options for {what}: {exc}") from None


def to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


def parse_key_values(pairs: list[str] | None) -> dict[str, str]:
    """['split=8', 'ranks=8,4,2'] -> {'split': '8', 'ranks': '8,4,2'}."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise HarnessError(f"--opt expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        key = key.strip()
        if not key:
            raise HarnessError(f"--opt expects KEY=VALUE, got {pair!r}")
        out[key] = value.strip()
    return out
