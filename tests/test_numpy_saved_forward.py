"""Reverse mode reuses what a primitive's forward made (backends/numpy/vjps.py SAVING): a
conv's patches. The rules give the same gradients bit for bit as when they recompute them."""

from __future__ import annotations

import numpy as np
from nndsl.backends.numpy import vjps
from nndsl.backends.numpy.prims import make_numpy_prims


def test_conv_gradient_from_the_forwards_patches() -> None:
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(2, 3, 6, 5)), rng.normal(size=(4, 3, 3, 2))
    args = (x, w, (1, 2), ((1, 1), (0, 1)), (1, 1))
    y, saved = vjps.SAVING["conv"](*args)
    np.testing.assert_array_equal(y, make_numpy_prims().conv(*args))
    g = rng.normal(size=y.shape)
    for rule in vjps.VJPS["conv"]:
        np.testing.assert_array_equal(rule(g, y, *args, **saved), rule(g, y, *args))
