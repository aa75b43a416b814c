"""The op catalog. Importing this package registers every op family."""

from nndsl.data import builtin as _builtin_data  # noqa: F401  (data sources register too)
from nndsl.data import files as _file_data  # noqa: F401
from nndsl.data import npy as _npy_data  # noqa: F401
from nndsl.ops import (  # noqa: F401  (imported for their registrations)
    activations,
    addressing,
    builtins,
    conv,
    gradients,
    hopfield,
    initializers,
    layers,
    losses,
    metrics,
    optimizers,
    rbm,
    recurrent,
    regularizers,
    schedules,
    sparse,
    spiking,
    stopping,
    transformer,
    upsampling,
)
from nndsl.ops.registry import OPS, TABLES, OpDef, all_ops, get, names

__all__ = ["OPS", "TABLES", "OpDef", "all_ops", "get", "names"]
