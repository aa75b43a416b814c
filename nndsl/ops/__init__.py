"""The op catalog. Importing this package registers every op family."""

from nndsl.ops import (  # noqa: F401  (imported for their registrations)
    activations,
    builtins,
    conv,
    initializers,
    layers,
    losses,
    optimizers,
    recurrent,
    regularizers,
    schedules,
    training,
)
from nndsl.ops.registry import OPS, TABLES, OpDef, all_ops, get, names

__all__ = ["OPS", "TABLES", "OpDef", "all_ops", "get", "names"]
