"""A CSV file too large to hold as Python objects (over `cache_bytes()`: 256 MiB, or the
environment variable NNDSL_CSV_CACHE_BYTES) is converted once, a chunk of rows at a time, to a
float32 .npy file in a cache folder, and from then on memory-mapped (nndsl/data/stream.py)
like any large .npy.

The cache folder is $NNDSL_CACHE_DIR, else $XDG_CACHE_HOME/nndsl, else ~/.cache/nndsl; one
entry per CSV file (by its resolved path), named after the file's size, modification time and a
hash of its first and last MiB (and the header and delimiter settings): a changed file is
converted again and its old entry removed. Every cell must be a finite number, except in a
column of text class labels (one whose first cell is text): there each cell is a label, stored
as its position in the column's sorted labels, which the entry's JSON keeps with the line each
label first appears on. Errors name the cell's line.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nndsl.data.stream import Mapped
from nndsl.errors import NndslError, Span, did_you_mean
from nndsl.files import cache_dir
from nndsl.npz import map_npy
from nndsl.table_files import Table, _records, is_number, shown_cell, unknown_label

DEFAULT_CACHE_BYTES = 256 * 2**20
CHUNK_ROWS = 65_536  # rows parsed at a time: the only rows held as Python objects
HEADER = 128  # bytes of the .npy header written before the rows are counted (then rewritten)
FINGERPRINT = 2**20  # bytes hashed at each end of the file


def cache_bytes() -> int:
    given = os.environ.get("NNDSL_CSV_CACHE_BYTES")
    try:
        return int(given) if given is not None else DEFAULT_CACHE_BYTES
    except ValueError:
        raise NndslError(f"NNDSL_CSV_CACHE_BYTES={given!r} is not a number of bytes") from None


@dataclass
class CachedTable(Table):
    """A converted CSV file: its column names, its cells as one mapped float32 array, and the
    sorted labels of its text columns with the line each label first appears on."""

    array: Mapped | None = None
    labels: dict[int, dict[str, int]] = field(default_factory=dict)

    def column(self, j: int) -> list[str]:
        """Column j's first cell as text (the cells of a converted file are numbers)."""
        assert self.array is not None
        return [repr(float(self.array.raw[0, j]))]

    def numbers(self, columns: list[int]) -> Any:
        """The columns, mapped; a column of text labels is an error at its first cell, as it
        is in a file read as text."""
        assert self.array is not None
        text = next((j for j in columns if j in self.labels), None)
        if text is not None:
            label, line = min(self.labels[text].items(), key=lambda item: item[1])
            raise NndslError(f"data row 1, {self.label(text)}: {shown_cell(label)} is not a "
                             "number", Span(str(self.file), line, 1, line, 2),
                             expected="a finite number", received=shown_cell(label),
                             hint="a column of text labels can only be a target")
        return self.array.columns(columns)

    def label_ids(self, j: int, known: list[str] | None) -> tuple[np.ndarray, list[str]] | None:
        """A text column's class ids — positions in `known` (a run's stored labels), else in
        its sorted labels — or None for a column of numbers."""
        found = self.labels.get(j)
        if found is None:
            return None
        assert self.array is not None
        ids = self.array.columns([j])[:][:, 0].astype(np.int64)  # one column, in memory
        labels = sorted(found)
        if known is None or known == labels:
            return ids, labels
        for label in sorted(found, key=found.__getitem__):  # the file's first unknown label
            if label not in known:
                line = found[label]
                what, details = unknown_label(label, known)
                raise NndslError(what, Span(str(self.file), line, 1, line, 2), **details,
                                 hint=did_you_mean(label, known)
                                 or "the run's labels are fixed when it starts (data.json)")
        return np.asarray([known.index(label) for label in labels], np.int64)[ids], list(known)


def cached_table(file: Path, header: bool | None, sep: str) -> CachedTable | None:
    """The file as a cached table when it is over `cache_bytes()`, else None (read it
    as text)."""
    try:
        stat = file.stat()
    except OSError:
        return None  # the text reader reports it
    if stat.st_size <= cache_bytes():
        return None
    folder = cache_dir() / "csv" / _digest(str(file.resolve()).encode())
    entry = folder / (f"{stat.st_size}-{stat.st_mtime_ns}-{_fingerprint(file, stat.st_size)}"
                      f"-{'h' if header else 'n' if header is False else 'a'}{ord(sep)}")
    npy, meta = entry.with_suffix(".npy"), entry.with_suffix(".json")
    if not (npy.is_file() and meta.is_file()):
        _forget(folder)
        folder.mkdir(parents=True, exist_ok=True)
        names, named, labels = convert(file, header, sep, npy)
        meta.write_text(json.dumps({"names": names, "header": named, "source": str(file),
                                    "labels": labels}))
    doc = json.loads(meta.read_text())
    array = map_npy(npy, 0, npy.stat().st_size, f"the cached conversion of '{file}'")
    labels = {int(j): found for j, found in doc.get("labels", {}).items()}
    return CachedTable(file, doc["names"], doc["header"], sep=sep, array=array, labels=labels)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _fingerprint(file: Path, size: int) -> str:
    with file.open("rb") as f:
        head = f.read(FINGERPRINT)
        f.seek(max(size - FINGERPRINT, 0))
        return _digest(head + f.read(FINGERPRINT))


def _forget(folder: Path) -> None:
    """Remove the conversions of an earlier version of the file."""
    if folder.is_dir():
        for old in folder.iterdir():
            old.unlink(missing_ok=True)


def convert(file: Path, header: bool | None, sep: str, npy: Path
            ) -> tuple[list[str], bool, dict[str, dict[str, int]]]:
    """Write the file's rows as float32 [rows, columns] to `npy`, CHUNK_ROWS at a time;
    returns the column names, whether the first row was a header, and each text column's
    labels (label -> the line it first appears on)."""
    partial = npy.with_suffix(".partial")
    reader = _ChunkWriter(file, sep)
    try:
        with file.open(encoding="utf-8-sig", newline="") as text, partial.open("wb") as out:
            out.write(b"\0" * HEADER)
            reader.write(csv.reader(text, delimiter=sep), header, out)
            out.seek(0)
            out.write(_npy_header(reader.rows, len(reader.names)))
    except UnicodeDecodeError:
        partial.unlink(missing_ok=True)
        raise NndslError(f"data file '{file}' is not UTF-8 text") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if not reader.rows:
        partial.unlink(missing_ok=True)
        raise NndslError(f"data file '{file}' has no data rows")
    reader.sort_labels(partial)
    os.replace(partial, npy)
    return reader.names, reader.named, {str(j): found for j, found in reader.first.items()}


@dataclass
class _ChunkWriter:
    file: Path
    sep: str
    rows: int = 0
    names: list[str] | None = None  # type: ignore[assignment]
    named: bool = False
    ids: dict[int, dict[str, int]] = field(default_factory=dict)  # text column: label -> id
    first: dict[int, dict[str, int]] = field(default_factory=dict)  # label -> its first line

    def write(self, reader: Any, header: bool | None, out: Any) -> None:
        chunk: list[list[str]] = []
        lines: list[int] = []
        for start, record in _records(reader, self.file):
            if not any(cell.strip() for cell in record):
                continue
            if self.names is None:
                self.named = header if header is not None else \
                    not all(is_number(c.strip()) for c in record)
                self.names = [c.strip() for c in record] if self.named else \
                    [str(j) for j in range(len(record))]
                if self.named:
                    continue
            self._fields(record, start)
            if not self.rows and not chunk:  # the first data row: which columns hold labels
                self.ids = {j: {} for j, c in enumerate(record)
                            if c.strip() and not is_number(c.strip())}
                self.first = {j: {} for j in self.ids}
            chunk.append(self._labelled(record, start, self.rows + len(chunk) + 1))
            lines.append(start)
            if len(chunk) == CHUNK_ROWS:
                self._flush(chunk, lines, out)
                chunk, lines = [], []
        if chunk:
            self._flush(chunk, lines, out)

    def _fields(self, record: list[str], line: int) -> None:
        assert self.names is not None
        if len(record) != len(self.names):
            first = "the header" if self.named else "the first row"
            raise NndslError(f"data row {self.rows + 1} has {len(record)} fields, {first} has "
                             f"{len(self.names)}", Span(str(self.file), line, 1, line, 2),
                             expected=f"{len(self.names)} fields",
                             received=f"{len(record)} fields",
                             hint="every row needs the same number of fields")

    def _column(self, j: int) -> str:
        """'column 3 ('name')' as messages say it."""
        assert self.names is not None
        return f"column {j + 1}" + (f" ('{self.names[j]}')" if self.named else "")

    def _labelled(self, record: list[str], line: int, row: int) -> list[Any]:
        """The record with each text column's label replaced by its provisional id (the order
        labels first appear in; `sort_labels` renumbers them)."""
        if not self.ids:
            return record
        out: list[Any] = list(record)
        for j, ids in self.ids.items():
            cell = record[j].strip()
            if not cell or is_number(cell):
                raise NndslError(f"data row {row}, {self._column(j)}: {shown_cell(cell)} is "
                                 "not a class label", Span(str(self.file), line, 1, line, 2),
                                 expected="a class label (the column's first cell is text)",
                                 received=shown_cell(cell), hint="a column holds class labels "
                                 "or numbers, not both; nndsl does not fill in missing values")
            if cell not in ids:
                ids[cell] = len(ids)
                self.first[j][cell] = line
            out[j] = ids[cell]
        return out

    def sort_labels(self, npy: Path) -> None:
        """Renumber each text column's ids as positions in its sorted labels (ids were given
        in the order labels first appeared), a chunk of rows at a time."""
        if not self.ids:
            return
        assert self.names is not None
        array = np.lib.format.open_memmap(npy, mode="r+")
        for j, ids in self.ids.items():
            order = {label: k for k, label in enumerate(sorted(ids))}
            renumber = np.asarray([order[label] for label in ids], np.float32)
            for start in range(0, self.rows, CHUNK_ROWS * 16):
                block = array[start:start + CHUNK_ROWS * 16, j]
                array[start:start + CHUNK_ROWS * 16, j] = renumber[block.astype(np.int64)]
        array.flush()
        del array

    def _flush(self, chunk: list[list[str]], lines: list[int], out: Any) -> None:
        try:
            values = np.array(chunk, dtype=np.float64)
        except ValueError:
            values = np.full((len(chunk), len(chunk[0])), np.nan)
        bad = ~np.isfinite(values) | (np.abs(values) > np.finfo(np.float32).max)
        if bad.any():
            i, j = (int(k) for k in np.argwhere(bad)[0])
            self._cell_error(chunk, lines, i, j)
        out.write(values.astype("<f4").tobytes())
        self.rows += len(chunk)

    def _cell_error(self, chunk: list[list[str]], lines: list[int], i: int, j: int) -> None:
        """The first cell of the chunk that is not a finite float32 number, at its line."""
        for i2, record in enumerate(chunk):
            for j2, cell in enumerate(record):
                if j2 in self.ids:
                    continue  # a label, already an id
                value = float(cell) if is_number(cell.strip()) else None
                if value is None or abs(value) > np.finfo(np.float32).max:
                    i, j = i2, j2
                    break
            else:
                continue
            break
        cell = chunk[i][j].strip()
        what = "is not a number" if not is_number(cell) else "is outside float32's range"
        raise NndslError(f"data row {self.rows + i + 1}, {self._column(j)}: {shown_cell(cell)} "
                         f"{what}",
                         Span(str(self.file), lines[i], 1, lines[i], 2),
                         expected="a finite number", received=shown_cell(cell),
                         hint="a column of class labels starts with a label; nndsl does not "
                         "fill in missing values")


def _npy_header(rows: int, columns: int) -> bytes:
    """A version 1.0 .npy header for float32 [rows, columns], padded to HEADER bytes."""
    text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {columns}), }}"
    body = text.ljust(HEADER - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1")
