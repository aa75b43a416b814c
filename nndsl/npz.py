""".npz archives read without trusting them: each array's header (its shape and dtype) is
checked against the bytes really stored before anything is allocated, so a header
that claims four billion rows is a clear error, not a 44 GiB allocation; pickles and Python
objects are refused; every failure is an `NndslError` naming the file and the array.
"""

from __future__ import annotations

import math
import struct
import zipfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np
from numpy.lib import format as npy_format

from nndsl.errors import NndslError

NPY_MAGIC = b"\x93NUMPY"
# What zipfile and zlib raise on a damaged archive (a bad header, an unknown compression or zip
# version, a wrong CRC, truncated data, undecodable names).
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, KeyError,
              RuntimeError, NotImplementedError, zlib.error, struct.error, UnicodeDecodeError)
HEADER_READERS = {(1, 0): npy_format.read_array_header_1_0,
                  (2, 0): npy_format.read_array_header_2_0}


def _header(f: IO[bytes], stored: int, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype an .npy stream declares, refused unless `stored` bytes (the stream's
    real size) hold them and the machine could hold them too."""
    try:
        version = npy_format.read_magic(f)
        reader = HEADER_READERS.get(version)
        if reader is None:
            raise ValueError(f"format version {version[0]}.{version[1]}")
        shape, _, dtype = reader(f)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as e:
        raise NndslError(f"{name} is not a valid .npy array ({e})") from None
    if dtype.hasobject:
        raise NndslError(f"{name} holds Python objects", hint="store numeric arrays; nndsl "
                         "never unpickles data")
    needed = math.prod(shape) * dtype.itemsize
    have = stored - f.tell()
    if needed > have:
        raise NndslError(f"{name}'s header claims shape {list(shape)} ({needed:,} bytes of "
                         f"{dtype}), but only {max(have, 0):,} bytes follow it",
                         hint="the file is truncated or damaged; write it again")
    from nndsl.memory import available_memory

    if needed > available_memory():
        raise NndslError(f"{name} holds {needed / 2**30:.1f} GiB, more than this machine's "
                         f"{available_memory() / 2**30:.1f} GiB of available memory")
    return shape, dtype


def _read(f: IO[bytes], stored: int, name: str) -> np.ndarray:
    start = f.tell()
    _header(f, stored, name)
    f.seek(start)
    try:
        return np.asarray(npy_format.read_array(f, allow_pickle=False))
    except (ValueError, OSError, EOFError) as e:
        raise NndslError(f"{name} cannot be read ({e})", hint="the file is truncated or "
                         "damaged; write it again") from None


class NpzArchive:
    """The arrays of one .npz file, read one at a time (each checked before it is read)."""

    def __init__(self, path: Path, label: str) -> None:
        self.path, self.label = path, label
        try:
            self.zip = zipfile.ZipFile(path)
        except FileNotFoundError:
            raise NndslError(f"{label} '{path}' does not exist",
                             hint="relative paths are relative to the spec file's folder")\
                from None
        except ZIP_ERRORS as e:
            raise NndslError(f"{label} '{path}' is not a NumPy .npz archive "
                             f"({type(e).__name__}: {e})") from None
        members = [i.filename for i in self.zip.infolist()]
        self.files = [m[:-4] for m in members if m.endswith(".npy")]

    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.zip.close()

    def read(self, key: str) -> np.ndarray:
        name = f"array '{key}' in '{self.path.name}'"
        try:
            info = self.zip.getinfo(key + ".npy")
            with self.zip.open(info) as f:
                return _read(f, info.file_size, name)
        except ZIP_ERRORS as e:
            raise NndslError(f"{name} cannot be read ({type(e).__name__}: {e})",
                             hint="the archive is truncated or damaged; write it again")\
                from None

    def read_all(self) -> dict[str, np.ndarray]:
        return {key: self.read(key) for key in self.files}


def open_npz(path: Path, label: str = "file") -> NpzArchive:
    """`with open_npz(path) as archive: archive.read(key)`; an .npy file is a clear error."""
    try:
        with path.open("rb") as f:
            start = f.read(len(NPY_MAGIC))
    except FileNotFoundError:
        raise NndslError(f"{label} '{path}' does not exist",
                         hint="relative paths are relative to the spec file's folder") from None
    except OSError as e:
        raise NndslError(f"cannot read {label} '{path}': {e.strerror}") from None
    if start == NPY_MAGIC:
        raise NndslError(f"{label} '{path}' holds one array (.npy), not an .npz archive",
                         hint="save named arrays with numpy.savez('f.npz', x=..., y=...)")
    return NpzArchive(path, label)

