"""The op catalog. Importing this package registers every op family."""

from nndsl.ops import (  # noqa: F401  (imported for their registrations)
    activations,
    layers,
    losses,
    initializers,
    regularizers,
    optimizers,
    schedules,
    training,
)
from nndsl.ops.registry import OPS, OpDef, get, names

__all__ = ["OPS", "OpDef", "get", "names"]
