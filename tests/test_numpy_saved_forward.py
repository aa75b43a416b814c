"""Reverse mode reuses what a primitive's forward made (backends/numpy/vjps.py SAVING): a
conv's patches, a max pool's winning offsets. The rules give the same gradients bit for bit as
when they recompute them."""

from __future__ import annotations

import numpy as np
import pytest
from nndsl.backends.numpy import vjps
from nndsl.backends.numpy.prims import make_numpy_prims

POOLS = [((2, 3, 8, 8), (2, 2), (2, 2), ((0, 0), (0, 0))),
         ((2, 3, 7, 9), (2, 2), (2, 2), ((0, 0), (0, 0))),
         ((2, 3, 9, 9), (3, 3), (1, 2), ((1, 1), (0, 1))),
         ((2, 4, 10), (3,), (1,), ((1, 2),)),
         ((1, 2, 5, 5, 5), (2, 2, 2), (1, 1, 1), ((0, 0), (0, 0), (0, 0)))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "kernel", "stride", "padding"), POOLS)
def test_max_pool_gradient_from_the_forwards_winners(shape: tuple, kernel: tuple, stride: tuple,
                                                     padding: tuple, dtype: type) -> None:
    rng = np.random.default_rng(len(shape))
    x = rng.integers(-2, 3, size=shape).astype(dtype)  # many ties, and -0.0 against 0.0
    x[x == 0] = np.where(rng.random((x == 0).sum()) < 0.5, -0.0, 0.0)
    y, saved = vjps.SAVING["max_pool"](x, kernel, stride, padding)
    np.testing.assert_array_equal(y, make_numpy_prims().max_pool(x, kernel, stride, padding))
    g = rng.normal(size=y.shape).astype(dtype)
    want = vjps._max_pool_x(g, y, x, kernel, stride, padding)
    got = vjps._max_pool_x(g, y, x, kernel, stride, padding, **saved)
    assert saved["winner"] is not None and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))


def test_a_nan_window_leaves_the_winners_to_the_rule() -> None:
    x = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4)
    x[0, 1, 2, 3] = np.nan
    y, saved = vjps.SAVING["max_pool"](x, (2, 2), (2, 2), ((0, 0), (0, 0)))
    assert saved["winner"] is None
    g = np.ones_like(y)
    dx = vjps._max_pool_x(g, y, x, (2, 2), (2, 2), ((0, 0), (0, 0)), **saved)
    assert dx[0, 1, 2, 3] == 1.0 and dx.sum() == y.size


def test_conv_gradient_from_the_forwards_patches() -> None:
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(2, 3, 6, 5)), rng.normal(size=(4, 3, 3, 2))
    args = (x, w, (1, 2), ((1, 1), (0, 1)), (1, 1))
    y, saved = vjps.SAVING["conv"](*args)
    np.testing.assert_array_equal(y, make_numpy_prims().conv(*args))
    g = rng.normal(size=y.shape)
    for rule in vjps.VJPS["conv"]:
        np.testing.assert_array_equal(rule(g, y, *args, **saved), rule(g, y, *args))
