"""Initializers that read weights from a file: `from_npz(path, array)` and
`from_run(run, label)` (an earlier run's weights: transfer learning).

They run like every initializer (`fn(rng, shape, fan_in, fan_out, *, ...)`, see
nndsl/ops/initializers.py) but ignore the seed: the array is used as it is. A relative path is
resolved against the folder of the spec that wrote it, when the model is built
(`FILE_PARAMS`, read by nndsl/builder.py). Given to `defaults { weights = ... }`, each weight
reads the array named after it (`ARRAY_PARAMS`, filled in by nndsl/passes/weights.py); a layer's
`init = from_run(RUN, LABEL)` starts every weight of the layer, `LABEL.<param>` each.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nndsl.errors import NndslError, did_you_mean
from nndsl.ir import Call
from nndsl.ops.registry import op

Shape = tuple[int, ...]

FILE_PARAMS = {"from_npz": "path", "from_run": "run"}  # initializers that read a file, and the
# parameter naming it: a relative path is resolved against the folder of the spec that wrote it
ARRAY_PARAMS = {"from_npz": "array", "from_run": "label"}  # ... and the one naming the array
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
        from nndsl.npz import open_npz

        try:
            with open_npz(Path(path), "weights file") as archive:  # each header checked first
                arrays = archive.read_all()
        except NndslError as e:
            raise NndslError(f"cannot read weights from '{path}': {e.message}",
                             hint=e.hint) from None
        if len(_NPZ_CACHE) >= 4:  # a model reads one or two files (a run's)
            _NPZ_CACHE.clear()
        _NPZ_CACHE[key] = arrays
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
    return _checked(arrays[array], f"'{path}': '{array}'", shape)


def _checked(value: np.ndarray, what: str, shape: Shape) -> np.ndarray:
    if not np.issubdtype(value.dtype, np.number) or np.iscomplexobj(value):
        raise NndslError(f"{what} is not an array of real numbers", received=str(value.dtype))
    if value.shape != tuple(shape):
        raise NndslError(f"{what} has the wrong shape for this weight",
                         expected=str(list(shape)), received=str(list(value.shape)))
    return value.astype(np.float64)


@op("from_run", "initializer")
def from_run(rng: np.random.Generator, shape: Shape, fan_in: int, fan_out: int, *, run: str,
             label: str = "", model: str = "") -> np.ndarray:
    """The weights an earlier run learnt: layer `label` of the model run directory `run` trained.

    Transfer learning: `dense(32, init=from_run("runs/ae", "enc"))` starts every weight of the
    layer (weight, bias, batch-norm statistics, ...) from `enc.weight`, `enc.bias`, ... of
    runs/ae/weights.npz, as `nndsl train` wrote it; `label.param` names one weight (`init=`
    then sets the weight alone). `defaults { weights = from_run("runs/ae") }` starts every
    weight of the model from the run's array of the same name. `model=` reads another model
    the run trained (a GAN's discriminator, from MODEL.weights.npz). The arrays are used as
    they are (the seed plays no part); a missing run or layer, or another shape, is an error
    at this call. Freeze the layer (`freeze = [label]`) to keep it, then fine-tune.
    """
    from pathlib import Path

    from nndsl.run_weights import run_arrays

    if "." not in label:
        raise NndslError("from_run needs the layer to read" if not label else
                         f"from_run(label={label}) names a layer: give it as a layer's init=",
                         expected='dense(32, init=from_run("runs/ae", "enc"))',
                         hint='or name one weight, from_run("runs/ae", "enc.weight"), or give '
                         'every weight its own with `defaults { weights = from_run("runs/ae") }`')
    if not Path(run).is_dir():
        raise NndslError(f"run directory '{run}' does not exist",
                         hint="train it first (`nndsl train SPEC --run-dir DIR`); a relative "
                         "path is relative to the spec file's folder")
    arrays = run_arrays(Path(run), model or None)
    if label not in arrays:
        layer = label.rsplit(".", 1)[0]
        layers = sorted({k.rsplit(".", 1)[0] for k in arrays})
        has = [k for k in arrays if k.startswith(f"{layer}.")]
        raise NndslError(f"run '{run}' has no weight '{label}'",
                         hint=(f"its layer '{layer}' has {', '.join(has)}" if has else
                               did_you_mean(layer, layers) or
                               f"its layers: {', '.join(layers[:12]) or 'none'}"))
    return _checked(arrays[label], f"run '{run}': '{label}'", shape)


def for_weight(call: Call, param: str) -> Call:
    """A layer's `init = from_run(RUN, LABEL)` for its weight `param`: LABEL.param."""
    key = ARRAY_PARAMS[call.name]
    return Call(call.name, tuple((k, f"{v}.{param}" if k == key else v)
                                 for k, v in call.kwargs), call.span)


def whole_layer(call: object) -> bool:
    """Whether a layer's init= starts all of its weights (a from_run naming a layer)."""
    return isinstance(call, Call) and call.name == "from_run" and \
        "." not in str(call.get("label", "")) and bool(call.get("label"))
