"""Early stopping rules: `fn(history, *, params) -> bool` (True = stop), pure Python.

`history` holds the monitored value once per completed epoch, oldest first; the trainer picks
the series named by the rule's `monitor` parameter. Every rule also takes `mode`, `min_delta`
(what counts as an improvement, `improves`) and `restore`: `best` (the default) ends the phase
with the weights of its best epoch by that measure, which is also the model exported; `last`
keeps the weights of the last epoch trained.
"""

from __future__ import annotations

import math
from typing import Literal

from nndsl.ops.optimizers import require
from nndsl.ops.registry import op


def improves(value: float, best: float | None, *, mode: str = "min",
             min_delta: float = 0.0) -> bool:
    """Whether `value` beats `best` (None: no value yet) by more than min_delta: value < best -
    min_delta when mode = min, value > best + min_delta when mode = max. NaN never improves."""
    if math.isnan(value):
        return False
    if best is None:
        return True
    sign = 1.0 if mode == "min" else -1.0
    return sign * value < sign * best - min_delta


@op("patience", "early_stop")
def patience(history: list[float], *, epochs: int, monitor: str = "val_loss",
             min_delta: float = 0.0, mode: Literal["min", "max"] = "min",
             restore: Literal["best", "last"] = "best") -> bool:
    """Stop once `epochs` epochs in a row fail to beat the best value by more than min_delta.

    mode = min: an improvement is value < best - min_delta; mode = max: value > best + min_delta
    (Keras EarlyStopping's rule). NaN never improves. restore = best (the default) ends the
    phase with the weights of its best epoch, the one exported (Keras's restore_best_weights);
    restore = last keeps the last epoch's.
    """
    require(epochs >= 1, "epochs", epochs, "an integer >= 1")
    require(min_delta >= 0, "min_delta", min_delta, "a number >= 0")
    require(bool(monitor), "monitor", monitor, "the name of a logged value")
    best, waited = None, 0
    for value in history:
        if improves(value, best, mode=mode, min_delta=min_delta):
            best, waited = value, 0
        else:
            waited += 1
    return waited >= epochs
