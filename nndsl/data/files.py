"""Data from the user's files: `csv(path, target=...)` and `npz(path, NAME="array", ...)`.

Relative paths are relative to `base_dir` (the spec file's folder). Errors are `NndslError`s;
those about one place in a CSV file carry that file's span, the others none (the caller adds
the data call's position).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from nndsl.errors import NndslError, Span, did_you_mean
from nndsl.npz import NpzArchive, open_npz
from nndsl.ops.optimizers import require
from nndsl.ops.registry import op

Arrays = dict[str, np.ndarray]
F32 = np.float32

def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise NndslError(f"data file '{file}' does not exist",
                         hint="relative paths are relative to the spec file's folder") from None
    except UnicodeDecodeError:
        raise NndslError(f"data file '{file}' is not UTF-8 text") from None
    except OSError as e:
        raise NndslError(f"cannot read data file '{file}': {e.strerror}") from None


def _cell_span(file: Path, line: int, raw: str, record: list[str], j: int, sep: str) -> Span:
    """The cell's position; its column is exact for unquoted lines, else the line start."""
    column = 1 if '"' in raw else 1 + sum(len(cell) + len(sep) for cell in record[:j])
    return Span(str(file), line, column, line, column + max(1, len(record[j])))


def visible(text: str, limit: int = 40) -> str:
    """A cell as a message can show it: characters a terminal would hide (NUL, other control
    characters) written as escapes, and at most `limit` characters."""
    shown = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                    for ch in text[:limit])
    return shown + (f"... ({len(text):,} characters)" if len(text) > limit else "")


def _is_number(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


@dataclass
class _CsvReader:
    """Turns CSV text into column names and rows of floats, reporting file:line:col errors."""

    file: Path
    header: bool
    sep: str

    def read(self, text: str) -> tuple[list[str], list[list[float]]]:
        lines = text.splitlines()
        reader = csv.reader(io.StringIO(text), delimiter=self.sep)
        names: list[str] | None = None
        rows: list[list[float]] = []
        for record in _records(reader, self.file):
            if not any(cell.strip() for cell in record):
                continue
            if names is None:
                names = [c.strip() for c in record] if self.header else [""] * len(record)
                if self.header:
                    continue
            raw = lines[reader.line_num - 1] if reader.line_num <= len(lines) else ""
            rows.append(self._row(record, names, len(rows) + 1, reader.line_num, raw))
        if names is None or not rows:
            raise NndslError(f"data file '{self.file}' has no data rows")
        return names, rows

    def _row(self, record: list[str], names: list[str], row: int, line: int,
             raw: str) -> list[float]:
        if len(record) != len(names):
            first = "the header" if self.header else "the first row"
            raise NndslError(
                f"data row {row} has {len(record)} fields, {first} has {len(names)}",
                Span(str(self.file), line, 1, line, len(raw) + 1),
                expected=f"{len(names)} fields", received=f"{len(record)} fields",
                hint="every row needs the same number of fields")
        if all(_is_number(cell) for cell in record):
            return [float(cell) for cell in record]
        j = next(j for j, cell in enumerate(record) if not _is_number(cell))
        column = f"column {j + 1}" + (f" ('{visible(names[j])}')" if names[j] else "")
        shown = f"'{visible(record[j].strip())}'" if record[j].strip() else "an empty cell"
        raise NndslError(
            f"data row {row}, {column}: {shown} is not a number",
            _cell_span(self.file, line, raw, record, j, self.sep),
            expected="a finite number", received=shown,
            hint="encode classes as integers; nndsl does not fill in missing values")


def _records(reader: Any, file: Path) -> Iterable[list[str]]:
    """The reader's records; its own errors (a field over csv's limit of 131,072 characters,
    a newline in an unquoted field) as positioned errors."""
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            line = reader.line_num
            raise NndslError(f"data file '{file}', line {line}: {e}",
                             Span(str(file), line, 1, line, 2),
                             hint="a CSV of numbers has short fields: check the file and its "
                             "delimiter") from None
        yield record


Columns = str | int | tuple[str, ...] | tuple[int, ...] | None


def _column_index(key: str | int, names: list[str], header: bool) -> int:
    if isinstance(key, int):
        require(-len(names) <= key < len(names), "target", key,
                f"a column number in [{-len(names)}, {len(names) - 1}]")
        return key % len(names)
    if not header:
        raise NndslError(f"target '{key}' names a column, but the file has no header",
                         hint="give 0-based column numbers, or header = true")
    if key not in names:
        raise NndslError(f"the CSV header has no column '{key}'", expected=", ".join(names),
                         received=key, hint=did_you_mean(key, names))
    return names.index(key)


def _target_indices(target: Columns, names: list[str], header: bool) -> list[int]:
    keys: Iterable[str | int] = target if isinstance(target, tuple) else (target,)
    indices = [_column_index(key, names, header) for key in keys]
    require(len(set(indices)) == len(indices) > 0, "target", target, "distinct columns")
    require(len(indices) < len(names), "target", target, "to leave at least one input column")
    return indices


@op("csv", "data")
def csv_data(base_dir: Path, *, path: str, target: Columns = None, header: bool = True,
             delimiter: str = ",") -> Arrays:
    """x = the non-target columns, y = the target column(s), each f32 [rows, columns].

    target names header columns or gives 0-based column numbers (negative count from the end);
    without a target, x holds every column. Every cell must be a finite number; blank lines are
    skipped. y keeps two axes ([rows, 1] for one column): the trainer shapes it as declared.
    """
    require(len(delimiter) == 1, "delimiter", delimiter, "a single character")
    file = base_dir / path
    names, rows = _CsvReader(file, header, delimiter).read(_read_text(file))
    table = np.asarray(rows, dtype=F32)
    if target is None:
        return {"x": table}
    picked = _target_indices(target, names, header)
    rest = [j for j in range(len(names)) if j not in picked]
    return {"x": table[:, rest], "y": table[:, picked]}


# A parameter the front end fills from free-form keyword arguments, `npz(path, x="X")`: each
# NAME="value" the op's signature does not name becomes one (NAME, value) pair, in order.
Names = Annotated[tuple[tuple[str, str], ...], "names"]


def _npz_array(archive: NpzArchive, file: Path, key: str) -> np.ndarray:
    if key not in archive.files:
        raise NndslError(f"'{file.name}' has no array '{key}'", expected=", ".join(archive.files),
                         received=key, hint=did_you_mean(key, archive.files))
    return archive.read(key)


@op("npz", "data")
def npz(base_dir: Path, *, path: str, arrays: Names = ()) -> Arrays:
    """data[NAME] = file[ARRAY] for each NAME="ARRAY" given; without any, every array as named.

    `npz("digits.npz", x="X", y="y")` feeds the array X to the model input or target x. Each
    array becomes the declared dtype: bool as 0/1, integers when exact in it (every int8, int16,
    uint8 and uint16 value is; float32 holds integers up to 2**24 exactly), floats when within
    its range (1e39 is not a float32). Complex, text, object, structured and 0-d arrays are
    errors, as is a header whose shape the stored bytes do not hold.
    """
    file = base_dir / path
    with open_npz(file, "data file") as archive:
        pairs = arrays or tuple((key, key) for key in archive.files)
        return {name: _npz_array(archive, file, key) for name, key in pairs}
