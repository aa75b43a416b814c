"""Data larger than memory: arrays read from disk a batch at a time.

An array stored in an .npy file, or uncompressed in an .npz archive, whose size passes
`threshold()` (1 GiB or a quarter of the available memory, whichever is smaller; the
environment variable NNDSL_STREAM_BYTES sets another) is not loaded: it is memory-mapped read-only
and wrapped in a `Mapped`, whose rows are read, converted to the declared dtype and copied out
one batch at a time. The training/validation split keeps index arrays, never copies. Pages
read are handed back to the operating system once about `RELEASE_BYTES` of them are resident, so
the process's resident memory stays near one batch's even though the map spans the whole file
(the kernel keeps them in its page cache, where reading them again costs no disk access). On
Linux what is resident is measured, not estimated: there a row read at random may map a whole
large folio of the page cache (2 MiB with ext4 on Linux 6.x, a 1,024-row batch 1.5 GiB), so rows
picked by index are read `GROUP_ROWS` at a time, each group followed by the check.

Smaller data keeps the faster path: loaded once, moved to the device once, batched by index.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nndsl.errors import NndslError

CHUNK_BYTES = 64 * 2**20  # validation reads this much of a mapped array at a time
RELEASE_BYTES = 256 * 2**20  # read pages handed back after about this much has been mapped
# A page fault on a mapped file maps the pages around it that are cached too (Linux's
# fault-around, 64 KiB by default), so where the system does not say what is resident, a row
# read at random counts as this much.
FAULT_AROUND = 64 * 2**10
GROUP_ROWS = 64  # rows read by index between two checks of what is resident
DEFAULT_THRESHOLD = 2**30
STATM = Path("/proc/self/statm")


def threshold() -> int:
    """Bytes above which an array is memory-mapped instead of loaded."""
    given = os.environ.get("NNDSL_STREAM_BYTES")
    if given is not None:
        try:
            return int(given)
        except ValueError:
            raise NndslError(f"NNDSL_STREAM_BYTES={given!r} is not a number of bytes") from None
    from nndsl.memory import available_memory

    return min(DEFAULT_THRESHOLD, available_memory() // 4)


def file_resident() -> int | None:
    """Bytes of files mapped into this process that are resident (Linux's /proc/self/statm:
    its shared pages), or None where the system does not say."""
    try:
        return int(STATM.read_bytes().split()[2]) * mmap.PAGESIZE
    except (OSError, IndexError, ValueError):
        return None


class Pages:
    """A read-only map of one file, whose read pages are released now and then."""

    def __init__(self, path: Path) -> None:
        with path.open("rb") as f:
            self.map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.read = 0
        self.base = file_resident()

    def touched(self, nbytes: int) -> None:
        """`nbytes` more were read: release the map's pages once what this process holds of
        mapped files has grown by `RELEASE_BYTES` (measured; else estimated from the reads)."""
        self.read += nbytes
        now = file_resident()
        grown = now - self.base if now is not None and self.base is not None else self.read
        if grown >= RELEASE_BYTES and hasattr(mmap, "MADV_DONTNEED"):
            self.map.madvise(mmap.MADV_DONTNEED)
            self.read = 0
            self.base = file_resident()


def map_array(path: Path, offset: int, shape: tuple[int, ...], dtype: np.dtype,
              fortran: bool) -> Mapped:
    """The array stored at `offset` in `path` (its header already checked), mapped."""
    pages = Pages(path)
    count = int(np.prod(shape))
    flat = np.frombuffer(pages.map, dtype=dtype, count=count, offset=offset)
    raw = flat.reshape(shape, order="F" if fortran else "C")
    return Mapped(raw, pages)


class Mapped:
    """Rows of a mapped array — optionally some of its columns (`cols`), rows picked by an
    index array (a split), its trailing shape fitted to a declaration — converted to `dtype`
    as they are read. `m[rows]` (a slice or an index array) is a NumPy array."""

    def __init__(self, raw: np.ndarray, pages: Pages, dtype: Any = None,
                 index: np.ndarray | None = None, cols: list[int] | None = None,
                 trailing: tuple[int, ...] | None = None) -> None:
        self.raw, self.pages, self.index, self.cols = raw, pages, index, cols
        self.dtype = np.dtype(dtype if dtype is not None else raw.dtype)
        self.trailing = trailing if trailing is not None else \
            (len(cols),) if cols is not None else raw.shape[1:]

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.trailing)

    @property
    def ndim(self) -> int:
        return 1 + len(self.trailing)

    def __len__(self) -> int:
        return len(self.index) if self.index is not None else len(self.raw)

    def stored(self, key: Any) -> np.ndarray:
        """Rows as stored (not converted): a copy, so the map's pages can be let go; rows by
        index `GROUP_ROWS` at a time, each group's pages counted before the next is read."""
        rows = self.index[key] if self.index is not None else key
        if isinstance(rows, np.ndarray) and rows.dtype.kind in "iu" and len(rows) > GROUP_ROWS:
            return np.concatenate([self._stored(rows[start:start + GROUP_ROWS])
                                   for start in range(0, len(rows), GROUP_ROWS)])
        return self._stored(rows)

    def _stored(self, rows: Any) -> np.ndarray:
        out = self.raw[rows]
        if self.cols is not None:
            out = out[:, self.cols]
        out = np.array(out.reshape((len(out), *self.trailing)))
        row_bytes = int(np.prod(self.raw.shape[1:])) * self.raw.dtype.itemsize
        spread = isinstance(rows, np.ndarray)  # rows by index: each may be a page of its own
        self.pages.touched(len(out) * (max(row_bytes, FAULT_AROUND) if spread else row_bytes))
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.stored(key).astype(self.dtype, copy=False)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """Every row at once (a trainer that reads the whole data set in one update)."""
        out = self[slice(None)]
        return out if dtype is None else out.astype(dtype)

    def like(self, **changes: Any) -> Mapped:
        """The same rows with another dtype, index, columns or trailing shape."""
        fields = {"dtype": self.dtype, "index": self.index, "cols": self.cols,
                  "trailing": self.trailing, **changes}
        return Mapped(self.raw, self.pages, **fields)

    def astype(self, dtype: Any) -> Mapped:
        return self.like(dtype=dtype)

    def rows(self, index: np.ndarray) -> Mapped:
        """The rows `index` picks, as an index (the split copies nothing)."""
        return self.like(index=self.index[index] if self.index is not None else index)

    def columns(self, cols: list[int]) -> Mapped:
        return self.like(cols=list(cols), trailing=(len(cols),))

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, the rows as stored) in pieces of about CHUNK_BYTES."""
        row_bytes = max(int(np.prod(self.raw.shape[1:])) * self.raw.dtype.itemsize, 1)
        step = max(CHUNK_BYTES // row_bytes, 1)
        for start in range(0, len(self), step):
            yield start, self.stored(slice(start, min(start + step, len(self))))


def streamed(arrays: Mapping[str, Any]) -> bool:
    """Whether any array of a split is read from disk batch by batch."""
    return any(isinstance(v, Mapped) for v in arrays.values())


def take_rows(array: Any, index: np.ndarray) -> Any:
    """array[index], lazily for a mapped array (an index, not a copy)."""
    return array.rows(index) if isinstance(array, Mapped) else array[index]


def checked(array: Any, check: Callable[[Any], Any]) -> Any:
    """check(array) — a chunk at a time for a mapped array (see `check_chunks`)."""
    return check_chunks(array, check) if isinstance(array, Mapped) else check(array)


def check_chunks(array: Mapped, check: Callable[[np.ndarray], Any]) -> Mapped:
    """Run `check` (the in-memory validation, which may convert as it checks) on every chunk of
    the mapped array: the result keeps the shape and dtype it gave, and reads nothing yet.
    An error's row and index count from the first row of the whole array."""
    fitted: np.ndarray | None = None
    for start, rows in array.chunks():
        try:
            fitted = check(rows)
        except NndslError as e:
            raise _shifted(e, start) from None
    if fitted is None:
        return array
    return array.like(trailing=fitted.shape[1:], dtype=fitted.dtype)


def _shifted(error: NndslError, start: int) -> NndslError:
    """The validation's message about a chunk, with rows counted in the whole array."""
    import re

    def shift(text: str | None) -> str | None:
        if text is None or not start:
            return text
        text = re.sub(r"at row (\d+)", lambda m: f"at row {int(m[1]) + start}", text)
        return re.sub(r"at index \((\d+)", lambda m: f"at index ({int(m[1]) + start}", text)

    error.message = shift(error.message) or error.message
    error.args = (error.message,)
    error.received = shift(error.received)
    return error
