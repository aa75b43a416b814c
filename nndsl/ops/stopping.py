"""Early stopping rules: `fn(history, *, params) -> bool` (True = stop), pure Python.

`history` holds the monitored value once per completed epoch, oldest first; the trainer picks
the series named by the rule's `monitor` parameter.
"""

from __future__ import annotations

import math
from typing import Literal

from nndsl.ops.optimizers import require
from nndsl.ops.registry import op


@op("patience", "early_stop")
def patience(history: list[float], *, epochs: int, monitor: str = "val_loss",
             min_delta: float = 0.0, mode: Literal["min", "max"] = "min") -> bool:
    """Stop once `epochs` epochs in a row fail to beat the best value by more than min_delta.

    mode = min: an improvement is value < best - min_delta; mode = max: value > best + min_delta
    (Keras EarlyStopping's rule). NaN never improves.
    """
    require(epochs >= 1, "epochs", epochs, "an integer >= 1")
    require(min_delta >= 0, "min_delta", min_delta, "a number >= 0")
    require(bool(monitor), "monitor", monitor, "the name of a logged value")
    sign = 1.0 if mode == "min" else -1.0
    best, waited = math.inf, 0
    for value in history:
        if sign * value < best - min_delta:
            best, waited = sign * value, 0
        else:
            waited += 1
    return waited >= epochs
