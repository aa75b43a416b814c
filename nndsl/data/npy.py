"""`npy(x="features.npy", y="labels.npy")`: data from one .npy file per array — the format
`numpy.save` writes and `numpy.lib.format.open_memmap` fills a piece at a time, for data
larger than memory (nndsl/data/stream.py reads it batch by batch)."""

from __future__ import annotations

from pathlib import Path

from nndsl.data.binding import Arrays, Names, Request, standardizing
from nndsl.data.stream import threshold
from nndsl.errors import NndslError
from nndsl.npz import open_npy
from nndsl.ops.registry import op


@op("npy", "data")
def npy(base_dir: Path, request: Request | None = None, *, arrays: Names = (),
        standardize: bool = False) -> Arrays:
    """data[NAME] = the array in the .npy file given as NAME="file.npy", one file per array.

    `npy(x="features.npy", y="labels.npy")` feeds features.npy to the input or target x. Each
    array becomes the declared dtype as in `npz`. A file over 1 GiB (or a quarter of the
    available memory) is memory-mapped and read from disk batch by batch, never loaded whole.
    standardize=true rescales each model input per feature, as csv's does (for arrays held in
    memory: a mapped one would be loaded).
    """
    if not arrays:
        raise NndslError("npy needs one NAME=\"file.npy\" per array",
                         expected='e.g. npy(x="features.npy", y="labels.npy")',
                         received="no arrays")
    loaded = {name: open_npy(base_dir / file, "data file", threshold())
              for name, file in arrays}
    return standardizing(loaded, request, standardize)  # type: ignore[return-value]
