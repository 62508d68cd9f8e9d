"""Trajectories as JSONL: one ``trajectory_to_dict`` record per line, type-checked on load.

Standard library only (no torch). Every record carries ``schema_version``; loading checks the
type of every field and then the schema's invariants (:func:`stepopsd.trajectory.validate_trajectory`),
and reports a bad line with its file, line number, trajectory and field.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import MISSING, asdict, fields
from pathlib import Path

from stepopsd.run_dir import written_whole
from stepopsd.trajectory import SCHEMA_VERSION, SchemaError, Span, SpanKind, Step, Trajectory

def trajectory_to_dict(traj: Trajectory) -> dict:
    """A JSON-ready dict with a ``schema_version`` field."""
    record = asdict(traj)
    for step in record["steps"]:
        for span in step["spans"]:
            span["kind"] = SpanKind(span["kind"]).value
    return {"schema_version": SCHEMA_VERSION, **record}


def trajectory_from_dict(record: dict) -> Trajectory:
    """Inverse of :func:`trajectory_to_dict`; type-checks every field, then validates the result.

    Raises :class:`SchemaError` naming the field, e.g. ``trajectory 't0', steps[2].action: must be
    a string, got integer 123``. Fields with a default may be absent (files written before they
    existed); unknown fields are refused. ``steps`` may be empty only for a truncated, unsuccessful
    trajectory (see :func:`validate_trajectory`).
    """
    if not isinstance(record, dict):
        raise SchemaError(f"a trajectory record must be a JSON object, got {describe_json(record)}")
    trajectory_id = record.get("trajectory_id")
    try:
        version = record.get("schema_version")
        if type(version) is not int or version != SCHEMA_VERSION:  # first: a newer file fails here, not on a field
            problem = "is missing" if version is None else f"{describe_json(version)} is not supported"
            raise _FieldError("schema_version", f"{problem} (this stepopsd reads {SCHEMA_VERSION})")
        record = _checked({k: v for k, v in record.items() if k != "schema_version"}, Trajectory, "")
        steps = []
        for n, step in enumerate(record.pop("steps")):
            step = _checked(step, Step, f"steps[{n}]")
            spans = [_checked(span, Span, f"steps[{n}].spans[{k}]") for k, span in enumerate(step.pop("spans", ()))]
            steps.append(Step(**step, spans=tuple(Span(**{**span, "kind": SpanKind(span["kind"])}) for span in spans)))
    except _FieldError as error:
        where = f"trajectory {trajectory_id!r}, " if isinstance(trajectory_id, str) else ""
        raise SchemaError(f"{where}{error.args[0]}: {error.args[1]}") from None
    return Trajectory(**record, steps=tuple(steps))


class _FieldError(Exception):
    """(path, problem): a field is wrong on load; trajectory_from_dict makes it a SchemaError."""


def _is_int(value) -> bool:
    return type(value) is int  # not bool: ``true`` is no index


def is_finite_number(value) -> bool:
    """A JSON number that is neither NaN nor infinite (not a bool)."""
    return type(value) in (int, float) and math.isfinite(value)


# A schema field's annotation -> (test of its JSON value, what it must be); then, for arrays, of each item.
_JSON_TYPES = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "SpanKind": (lambda v: v in [kind.value for kind in SpanKind], f"one of {', '.join(k.value for k in SpanKind)}"),
    "int": (_is_int, "an integer"),
    "int | None": (lambda v: v is None or _is_int(v), "an integer or null"),
    "float": (is_finite_number, "a finite number"),
    "bool": (lambda v: type(v) is bool, "true or false"),
    "dict": (lambda v: isinstance(v, dict), "a JSON object"),
    "tuple[Span, ...]": (lambda v: isinstance(v, list), "a list of span objects"),
    "tuple[Step, ...]": (lambda v: isinstance(v, list), "a list of step objects"),
    "tuple[int, ...]": (lambda v: isinstance(v, list), "a list of token ids"),
    "tuple[bool, ...]": (lambda v: isinstance(v, list), "a list of true/false"),
    "tuple[float, ...]": (lambda v: isinstance(v, list), "a list of numbers"),
}
_ITEM_TYPES = {
    "tuple[int, ...]": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "tuple[bool, ...]": _JSON_TYPES["bool"],
    "tuple[float, ...]": (lambda v: type(v) in (int, float) and not math.isnan(v), "a number (not NaN)"),
}
assert all(f.type in _JSON_TYPES for cls in (Span, Step, Trajectory) for f in fields(cls)), "a field without a JSON type"


def describe_json(value) -> str:
    """``string "maybe"``: a value's JSON type and its (shortened) JSON text, for error messages.

    >>> describe_json(float("nan"))
    'number NaN'
    """
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "object"}.get(type(value), "")
    text = json.dumps(value, ensure_ascii=False, default=repr)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{kind or type(value).__name__} {text}" if value is not None else "null"


def _checked(record, cls: type, path: str) -> dict:
    """A copy of ``record`` once it is a JSON object of ``cls``'s fields, each of its JSON type (numbers as float)."""
    if not isinstance(record, dict):
        raise _FieldError(path, f"must be a JSON object, got {describe_json(record)}")
    schema = {f.name: f for f in fields(cls)}
    extra = [key for key in record if key not in schema]
    if extra:
        raise _FieldError(f"{path}.{extra[0]}" if path else extra[0], "is not a field of the schema")
    record = dict(record)
    for name, field_ in schema.items():
        where = f"{path}.{name}" if path else name
        if name not in record:
            if field_.default is MISSING and field_.default_factory is MISSING:
                raise _FieldError(where, "is missing")
            continue
        value = record[name]
        test, what = _JSON_TYPES[field_.type]
        if not test(value):
            raise _FieldError(where, f"must be {what}, got {describe_json(value)}")
        if field_.type == "float":
            record[name] = float(value)
        if field_.type in _ITEM_TYPES:
            test, what = _ITEM_TYPES[field_.type]
            bad = next((n for n, item in enumerate(value) if not test(item)), None)
            if bad is not None:
                raise _FieldError(f"{where}[{bad}]", f"must be {what}, got {describe_json(value[bad])}")
            record[name] = tuple(float(x) for x in value) if field_.type == "tuple[float, ...]" else tuple(value)
    return record


def save_trajectories(trajectories: Iterable[Trajectory], path: str | Path, *, append: bool = False) -> int:
    """Write one trajectory per line; returns the number written. A file replaced (not ``append``) is
    written beside it and moved into place when whole."""
    if append:
        return _write_lines(trajectories, path, "a")
    with written_whole(path) as partial:
        return _write_lines(trajectories, partial, "w")


def _write_lines(trajectories: Iterable[Trajectory], path: str | Path, mode: str) -> int:
    count = 0
    with open(path, mode, encoding="utf-8") as handle:
        for traj in trajectories:
            handle.write(json.dumps(trajectory_to_dict(traj), ensure_ascii=False) + "\n")
            count += 1
    return count


class TrajectoryFileError(ValueError):
    """A JSONL file holds unreadable lines, or no trajectory at all; ``valid`` holds every line that was read.

    The message is one line: the file, then the first five bad lines with their reasons.
    """

    def __init__(self, path: Path, bad_lines: list[tuple[int, str]], valid: list[Trajectory]):
        self.path, self.bad_lines, self.valid = path, bad_lines, valid
        if not bad_lines:
            super().__init__(f"no trajectories in {path} (the file is empty)")
            return
        shown = "; ".join(f"line {n}: {why}" for n, why in bad_lines[:5])
        more = f" (and {len(bad_lines) - 5} more)" if len(bad_lines) > 5 else ""
        none = "" if valid else "no readable trajectory, "
        super().__init__(f"{path}: {none}{len(bad_lines)} unreadable line(s): {shown}{more}")


def iter_trajectories(path: str | Path) -> Iterator[tuple[int, Trajectory | str]]:
    """Yield ``(line_number, trajectory)`` or ``(line_number, reason)`` per non-blank line of ``path``.

    A reason is one line: ``invalid JSON: ... (column 48)``, ``not UTF-8 text: ...`` or the
    :class:`SchemaError` message naming the field.
    """
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                yield line_number, trajectory_from_dict(json.loads(raw.decode("utf-8")))
            except json.JSONDecodeError as error:
                yield line_number, f"invalid JSON: {error.msg} (column {error.colno})"
            except UnicodeDecodeError as error:
                yield line_number, f"not UTF-8 text: byte {raw[error.start]:#04x} at column {error.start + 1}"
            except RecursionError:
                yield line_number, "invalid JSON: nested too deeply"
            except SchemaError as error:
                yield line_number, str(error)


def load_trajectories(path: str | Path, *, strict: bool = True) -> list[Trajectory]:
    """Read and validate a JSONL file of trajectories (at least one).

    Every record is type-checked (see :func:`trajectory_from_dict`); a corrupt, truncated or
    invalid line is reported with its line number and reason. ``strict=True`` raises
    :class:`TrajectoryFileError` (whose ``valid`` attribute still holds every good line);
    ``strict=False`` warns and returns the good lines. Either way, a file without a single
    trajectory (empty, blank, or every line bad) raises :class:`TrajectoryFileError`: there is
    nothing to return. A missing path raises ``FileNotFoundError``, a folder ``IsADirectoryError``.
    Every message is one line, fit to show as is.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, expected a trajectories JSONL file")
    if not path.is_file():
        raise FileNotFoundError(f"no trajectory file at {path}")
    valid: list[Trajectory] = []
    bad_lines: list[tuple[int, str]] = []
    for line_number, item in iter_trajectories(path):
        if isinstance(item, Trajectory):
            valid.append(item)
        else:
            bad_lines.append((line_number, item))
    if bad_lines or not valid:
        error = TrajectoryFileError(path, bad_lines, valid)
        if strict or not valid:
            raise error
        warnings.warn(str(error), stacklevel=2)
    return valid
