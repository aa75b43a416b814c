"""Initializers that read weights from a file: `from_npz(path, array)`.

They run like every initializer (`fn(rng, shape, fan_in, fan_out, *, ...)`, see
nndsl/ops/initializers.py) but ignore the seed: the array is used as it is. A relative path is
resolved against the folder of the spec that wrote it, when the model is built
(`FILE_PARAMS`, read by nndsl/builder.py).
"""

from __future__ import annotations

import os

import numpy as np

from nndsl.errors import NndslError, did_you_mean
from nndsl.ops.registry import op

Shape = tuple[int, ...]

FILE_PARAMS = {"from_npz": "path"}  # initializers that read a file, and the parameter naming it:
# a relative path is resolved against the folder of the spec that wrote it (nndsl/builder.py)
_NPZ_CACHE: dict[tuple[str, int, int], dict[str, np.ndarray]] = {}


def read_npz(path: str) -> dict[str, np.ndarray]:
    """Every array of an .npz file, read once per file version (a model reads one per weight).

    Pickled objects are never loaded (they can run code); a damaged archive is a clear error."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise NndslError(f"weights file '{path}' does not exist",
                         hint="a relative path is relative to the spec file's folder") from None
    except OSError as e:
        raise NndslError(f"cannot read weights file '{path}': {e.strerror}") from None
    key = (os.path.realpath(path), stat.st_mtime_ns, stat.st_size)
    if key not in _NPZ_CACHE:
        try:
            with np.load(path, allow_pickle=False) as archive:
                _NPZ_CACHE.clear()  # one file at a time: a model reads one weights file
                _NPZ_CACHE[key] = {name: archive[name] for name in archive.files}
        except (AttributeError, TypeError):  # a single .npy array has no names
            raise NndslError(f"'{path}' is not an .npz archive of named arrays",
                             hint="write it with numpy.savez(path, name=array, ...)") from None
        except (OSError, ValueError, EOFError, KeyError) as e:  # zip errors, pickled members
            raise NndslError(f"cannot read weights from '{path}': {str(e).splitlines()[0]}",
                             hint="an .npz of plain numeric arrays, as `nndsl train` and "
                             "`nndsl import` write them") from None
    return _NPZ_CACHE[key]


@op("from_npz", "initializer")
def from_npz(rng: np.random.Generator, shape: Shape, fan_in: int, fan_out: int, *, path: str,
             array: str = "") -> np.ndarray:
    """The array named `array` in the .npz file `path` (trained or imported weights).

    `from_npz("run/weights.npz", "enc.weight")` sets one weight; `defaults { weights =
    from_npz("model.npz") }` gives every weight, bias and buffer of the model the array named
    after it, `<label>.<param>` (the names `nndsl train` writes to weights.npz). The array must
    have the weight's shape; it is used as is (the seed plays no part).
    """
    if not array:
        raise NndslError("from_npz needs the name of the array to read",
                         expected='from_npz("file.npz", "label.param")',
                         hint='or give every weight its own array with `defaults { weights = '
                         'from_npz("file.npz") }`')
    arrays = read_npz(path)
    if array not in arrays:
        raise NndslError(f"'{path}' has no array '{array}'",
                         hint=did_you_mean(array, arrays) or
                         f"it holds {', '.join(sorted(arrays)[:8]) or 'no arrays'}"
                         f"{', ...' if len(arrays) > 8 else ''}")
    value = arrays[array]
    if not np.issubdtype(value.dtype, np.number) or np.iscomplexobj(value):
        raise NndslError(f"'{path}': '{array}' is not an array of real numbers",
                         received=str(value.dtype))
    if value.shape != tuple(shape):
        raise NndslError(f"'{path}': '{array}' has the wrong shape for this weight",
                         expected=str(list(shape)), received=str(list(value.shape)))
    return value.astype(np.float64)
