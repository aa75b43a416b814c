"""Data from the user's files: `csv(path, ...)` and `npz(path, NAME="array", ...)`.

A data op takes the spec file's folder (relative paths are relative to it) and, when its
function has a second positional parameter, the `Request` of what the spec reads (its inputs
and targets by name, and a stored binding to keep): csv binds columns by those names
(nndsl/data/columns.py). Called without a request, csv binds as a model with input `x` and,
given `target=`, target `y`. Errors are `NndslError`s; those about one place in a CSV file carry
that file's span, the others none (the caller adds the data call's position).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nndsl.data.binding import Arrays, Binding, BoundArrays, Names, Request, standardizing
from nndsl.data.columns import Columns, bind_columns, listed_names, target_array
from nndsl.data.csv_cache import cached_table
from nndsl.data.stream import threshold
from nndsl.errors import NndslError, did_you_mean, require
from nndsl.npz import NpzArchive, open_npz
from nndsl.ops.registry import op
from nndsl.table_files import Table, parse_table, read_text

F32 = np.float32


def _table(file: Path, header: bool, sep: str) -> Table:
    table = parse_table(file, read_text(file), header, sep)
    if not table.rows:
        raise NndslError(f"data file '{file}' has no data rows")
    return table


@op("csv", "data")
def csv_data(base_dir: Path, request: Request | None = None, *, path: str,
             target: Columns = None, inputs: Columns = None, header: bool = True,
             delimiter: str = ",", standardize: bool = False) -> Arrays:
    """Columns of a CSV file, bound to the spec's inputs and targets by name.

    A target reads the column named after it (`target species` reads `species`), else the
    column(s) `target=` names. The model's one input reads the columns `inputs=` lists, else
    every column that is not a target, in file order; several inputs each read the column NAME
    or the columns NAME_0, NAME_1, ... . `target=` and `inputs=` take header names, 0-based
    column numbers (negative count from the end) and inclusive ranges "first:last", alone or
    in a list. A target column of text ("setosa") holds class labels: class ids are their
    positions in the sorted labels. Input cells must be finite numbers; blank lines are
    skipped. standardize=true rescales each input column to mean 0 and standard deviation 1
    with statistics from the training rows only, folded into the exported model.
    """
    require(len(delimiter) == 1, "delimiter", delimiter, "a single character")
    file = base_dir / path
    table = cached_table(file, header, delimiter) or _table(file, header, delimiter)
    request = request or Request(("x",), ("y",) if target is not None else ())
    columns = bind_columns(table, request, target, inputs)
    arrays: dict[str, np.ndarray] = {}
    binding = Binding({name: listed_names(table, cols) for name, cols in columns.items()})
    for name, cols in columns.items():
        if name in request.targets:
            arrays[name], labels = target_array(table, name, cols, request.stored)
            if labels is not None:
                binding.labels[name] = labels
        else:
            arrays[name] = table.numbers(cols).astype(F32)
    return BoundArrays(arrays, binding, request.inputs if standardize else ())


def _npz_array(archive: NpzArchive, file: Path, key: str) -> np.ndarray:
    if key not in archive.files:
        raise NndslError(f"'{file.name}' has no array '{key}'", expected=", ".join(archive.files),
                         received=key, hint=did_you_mean(key, archive.files))
    return archive.read(key, stream_over=threshold())  # type: ignore[return-value]


@op("npz", "data")
def npz(base_dir: Path, request: Request | None = None, *, path: str, arrays: Names = (),
        standardize: bool = False) -> Arrays:
    """data[NAME] = file[ARRAY] for each NAME="ARRAY" given; without any, every array as named.

    `npz("digits.npz", x="X", y="y")` feeds the array X to the model input or target x. Each
    array becomes the declared dtype: bool as 0/1, integers when exact in it (every int8, int16,
    uint8 and uint16 value is; float32 holds integers up to 2**24 exactly), floats when within
    its range (1e39 is not a float32). Complex, text, object, structured and 0-d arrays are
    errors, as is a header whose shape the stored bytes do not hold. An array stored
    uncompressed (numpy.savez) over 1 GiB (or a quarter of the available memory) is read from
    disk batch by batch instead of loaded. standardize=true rescales each model input to mean 0
    and standard deviation 1 per feature, as csv's does.
    """
    file = base_dir / path
    with open_npz(file, "data file") as archive:
        pairs = arrays or tuple((key, key) for key in archive.files)
        loaded = {name: _npz_array(archive, file, key) for name, key in pairs}
    return standardizing(loaded, request, standardize)
