"""The NumPy reference's faster kernels give the plain definitions' values: `where` by bit
arithmetic is np.where bit for bit, the max pool's backward is the loop over windows that
gives each window's cotangent to its first maximum, and the conv's input gradient is the
scatter of every output's cotangent over its window."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from nndsl.backends.numpy.prims import make_numpy_prims, where
from nndsl.backends.numpy.vjps import _conv_x, _masked, _max_pool_x

P = make_numpy_prims()


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_where_is_np_where_bit_for_bit(dtype: type) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 5)).astype(dtype)
    b = rng.standard_normal((6, 5)).astype(dtype)
    a[0, :3], b[1, :3] = [np.nan, np.inf, -0.0], [np.nan, -np.inf, -0.0]
    c = rng.random((6, 5)) < 0.5
    for x, y in [(a, b), (a, np.zeros_like(b)), (a.T.copy().T, b[::-1]), (a, b[:1]),
                 (a, 0.0)]:
        got, want = where(c, x, y), np.where(c, x, y)
        assert got.dtype == want.dtype and _bits(got) == _bits(want)
    for keep in (c, c[:1], c[:, :1]):
        got, want = _masked(a, keep), np.where(keep, a, 0.0)
        assert got.dtype == want.dtype and _bits(got) == _bits(want)


def _pool_x_by_loops(g: np.ndarray, x: np.ndarray, kernel: tuple[int, int],
                     stride: tuple[int, int], padding: list[tuple[int, int]]) -> np.ndarray:
    """Each window's cotangent to its first maximum (np.argmax over the flattened window)."""
    xp = np.pad(x, [(0, 0), (0, 0), *padding], constant_values=-np.inf)
    dx = np.zeros_like(xp)
    for n, c, i, j in itertools.product(*map(range, g.shape)):
        r, s = i * stride[0], j * stride[1]
        window = xp[n, c, r:r + kernel[0], s:s + kernel[1]]
        a, b = np.unravel_index(np.argmax(window), kernel)
        dx[n, c, r + a, s + b] += g[n, c, i, j]
    (top, bottom), (left, right) = padding
    return dx[:, :, top:xp.shape[2] - bottom, left:xp.shape[3] - right]


@pytest.mark.parametrize(("kernel", "stride", "padding"), [
    ((2, 2), (2, 2), [(0, 0), (0, 0)]), ((3, 2), (1, 2), [(1, 0), (0, 1)]),
    ((2, 3), (3, 1), [(0, 0), (1, 1)]), ((1, 1), (1, 1), [(0, 0), (0, 0)])])
def test_max_pool_backward_is_the_loop_over_windows(kernel: tuple[int, int],
                                                    stride: tuple[int, int],
                                                    padding: list[tuple[int, int]]) -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(-2, 3, size=(2, 3, 6, 6)).astype(np.float64)  # many ties
    x[0, 0, :2, :2] = np.nan
    x[1, 2] = -np.inf
    y = P.max_pool(x, kernel, stride, padding)
    g = rng.standard_normal(y.shape)
    got = _max_pool_x(g, y, x, kernel, stride, padding)
    # overlapping windows add in another order: equal up to rounding
    np.testing.assert_allclose(got, _pool_x_by_loops(g, x, kernel, stride, padding),
                               rtol=1e-14, atol=0)


@pytest.mark.parametrize(("stride", "padding", "dilation"), [
    ((1, 1), [(1, 1), (1, 1)], None), ((2, 1), [(0, 1), (2, 0)], (1, 2))])
def test_conv_input_gradient_scatters_each_output_over_its_window(
        stride: tuple[int, int], padding: list[tuple[int, int]],
        dilation: tuple[int, int] | None) -> None:
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 2))
    d = dilation or (1, 1)
    y = P.conv(x, w, stride, padding, d)
    g = rng.standard_normal(y.shape)
    want = np.zeros((2, 3, 7 + sum(padding[0]), 6 + sum(padding[1])))
    for i, j, a, b in itertools.product(range(y.shape[2]), range(y.shape[3]), range(3), range(2)):
        r, s = i * stride[0] + a * d[0], j * stride[1] + b * d[1]
        want[:, :, r, s] += g[:, :, i, j] @ w[:, :, a, b]
    want = want[:, :, padding[0][0]:want.shape[2] - padding[0][1],
                padding[1][0]:want.shape[3] - padding[1][1]]
    np.testing.assert_allclose(_conv_x(g, y, x, w, stride, padding, dilation), want,
                               rtol=1e-12, atol=1e-12)
