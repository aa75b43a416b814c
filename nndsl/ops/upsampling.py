"""Decoder layers that enlarge feature maps: transposed convolution and upsampling (NCHW).

Conventions fixed here:

- `conv_transpose2d` is the adjoint (gradient with respect to the input) of a strided
  cross-correlation (Dumoulin & Visin 2016, "A guide to convolution arithmetic", §4), as torch
  `ConvTranspose2d` and ONNX `ConvTranspose`: weight `[in_channels, channels, kh, kw]` (in
  before out, the reverse of conv2d), bias `[channels]`. Each input pixel adds its value times
  the kernel into the output at stride s; then `padding` crops the border. Per spatial axis,
  with the full output (in − 1)·s + k:
  an int p crops p on both sides (torch's padding); `valid` crops nothing; `same` crops k − s,
  ⌊(k − s)/2⌋ before and the rest after, so out = in·s (it needs k ≥ s). `output_padding`
  (< stride) then adds that many rows/columns after, as torch's output_padding: out =
  (in − 1)·s + k − crops + output_padding.
- The decomposition inserts s − 1 zeros between input pixels and cross-correlates with the
  kernel flipped in both spatial axes and its channel axes swapped, padded by k − 1 − crop.
- `upsample(scale, mode)` repeats (nearest) or interpolates (bilinear) by integer factors. It is
  torch `F.interpolate(scale_factor=s, mode=..., align_corners=False)` and ONNX `Resize` with
  `coordinate_transformation_mode` = `asymmetric` and `nearest_mode` = `floor` (nearest), or
  `pytorch_half_pixel` (bilinear): output pixel o reads the input at (o + ½)/s − ½, clamped to
  [0, in − 1], from its two neighbours weighted by distance.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from nndsl.errors import NndslError
from nndsl.ir import TensorType, format_shape
from nndsl.ops.conv import LAYOUT, RESHAPE_HINT, Size, sizes
from nndsl.ops.registry import Weight, WeightSpec
from nndsl.ops.shapes import known_dim, layer_op, need_rank, per_channel, positive

TransposePadding = Literal["valid", "same"] | int
Crops = tuple[tuple[int, int], ...]  # (before, after) per spatial axis


def _spatial(name: str, x: TensorType) -> tuple[int, int]:
    """x's height and width as ints (the output size is computed from them)."""
    need_rank(name, x, {4: LAYOUT[2]}, RESHAPE_HINT[2])
    for axis in (2, 3):
        if not isinstance(x.shape[axis], int):
            raise NndslError(
                f"{name} needs integer spatial sizes, got '{x.shape[axis]}' in "
                f"{format_shape(x.shape)}", expected=f"{LAYOUT[2]} with integer spatial sizes",
                received=str(x), hint="declare the height and width of the input")
    return x.shape[2], x.shape[3]


class TransposeGeometry(NamedTuple):
    """Per spatial axis: kernel, stride, (before, after) border crops and output padding."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    crops: tuple[tuple[int, int], ...]
    extra: tuple[int, ...]

    def out_size(self, axis: int, n: int) -> int:
        """The output size along spatial `axis` (0 or 1) for an input size n."""
        lo, hi = self.crops[axis]
        return (n - 1) * self.stride[axis] + self.kernel[axis] - lo - hi + self.extra[axis]


def transpose_geometry(kernel: Size, stride: Size, padding: TransposePadding,
                       output_padding: Size) -> TransposeGeometry:
    """The checked sizes of a conv_transpose2d (see the module docstring)."""
    name = "conv_transpose2d"
    k, s = sizes(name, "kernel", kernel, 2), sizes(name, "stride", stride, 2)
    extra = (output_padding,) * 2 if isinstance(output_padding, int) else tuple(output_padding)
    if len(extra) != 2 or any(not 0 <= e < ss for e, ss in zip(extra, s, strict=True)):
        raise NndslError(f"{name} `output_padding` must be >= 0 and less than the stride, "
                         f"got {output_padding}", expected=f"0 <= output_padding < stride {s}",
                         received=f"output_padding={output_padding}")
    return TransposeGeometry(k, s, _border_crops(k, s, padding), extra)


def _border_crops(k: tuple[int, ...], s: tuple[int, ...],
                  padding: TransposePadding) -> Crops:
    name = "conv_transpose2d"
    if isinstance(padding, int) and not isinstance(padding, bool):
        if not 0 <= padding < min(k):
            raise NndslError(f"{name} padding {padding} must be >= 0 and less than the kernel",
                             expected=f"0 <= padding < {min(k)}", received=f"padding={padding}")
        return ((padding, padding),) * 2
    if padding == "valid":
        return ((0, 0),) * 2
    if padding != "same":
        raise NndslError(f"{name} padding {padding!r} is not a border mode",
                         expected="valid | same | an integer >= 0", received=f"padding={padding}")
    if any(kk < ss for kk, ss in zip(k, s, strict=True)):
        raise NndslError(f"{name} padding=same needs kernel >= stride, got kernel {list(k)} "
                         f"and stride {list(s)}", expected="kernel >= stride on every axis",
                         received=f"kernel={list(k)}, stride={list(s)}",
                         hint="use a kernel at least as large as the stride")
    return tuple(((kk - ss) // 2, kk - ss - (kk - ss) // 2) for kk, ss in zip(k, s, strict=True))


def _conv_transpose_type(x: TensorType, *, channels: int, kernel: Size, stride: Size,
                         padding: TransposePadding, output_padding: Size,
                         **_: Any) -> TensorType:
    name = "conv_transpose2d"
    spatial = _spatial(name, x)
    known_dim(name, x, 1, "input channels")
    positive(name, channels=channels)
    geometry = transpose_geometry(kernel, stride, padding, output_padding)
    out = tuple(geometry.out_size(a, n) for a, n in enumerate(spatial))
    if min(out) < 1:
        raise NndslError(f"conv_transpose2d padding {padding} crops the whole output",
                         expected="a positive output size", received=f"output size {list(out)}")
    return x.with_shape((x.shape[0], channels, *out))


def _conv_transpose_weights(x: TensorType, *, channels: int, kernel: Size, use_bias: bool,
                            **_: Any) -> dict[str, WeightSpec]:
    name = "conv_transpose2d"
    need_rank(name, x, {4: LAYOUT[2]}, RESHAPE_HINT[2])
    c_in, k = known_dim(name, x, 1, "input channels"), sizes(name, "kernel", kernel, 2)
    fan_in, fan_out = c_in * k[0] * k[1], channels * k[0] * k[1]
    specs = {"weight": WeightSpec((c_in, channels, *k), fan_in=fan_in, fan_out=fan_out)}
    if use_bias:
        specs["bias"] = WeightSpec((channels,), "bias", fan_in=fan_in, fan_out=fan_out)
    return specs


def dilate(P: Any, x: Any, stride: tuple[int, ...]) -> Any:
    """x [N, C, H, W] with s − 1 zeros between neighbouring pixels: [N, C, (H−1)s+1, (W−1)t+1]."""
    if stride == (1, 1):
        return x
    _, _, h, w = P.shape(x)
    sh, sw = stride
    y = P.pad(P.reshape(x, (None, None, h, 1, w, 1)),
              ((0, 0), (0, 0), (0, 0), (0, sh - 1), (0, 0), (0, sw - 1)))
    y = P.reshape(y, (None, None, h * sh, w * sw))
    return P.slice(P.slice(y, 2, 0, (h - 1) * sh + 1), 3, 0, (w - 1) * sw + 1)


@layer_op("conv_transpose2d", infer=_conv_transpose_type, weights=_conv_transpose_weights,
          samples=(((2, 3, 4, 5),),),
          sample_params={"channels": 2, "kernel": (3, 2), "stride": 2, "padding": 1,
                         "output_padding": 1})
def conv_transpose2d(P: Any, x: Any, *, channels: int, kernel: Size, stride: Size = 1,
                     padding: TransposePadding = "valid", output_padding: Size = 0,
                     use_bias: bool = True, weight: Weight, bias: Weight = None) -> Any:
    """y = b + Σ_c,i,j x[c, i, j] W[c] placed at (s·i, s·j), then cropped; W [in, out, kh, kw]."""
    g = transpose_geometry(kernel, stride, padding, output_padding)
    flipped = P.flip(P.flip(P.transpose(weight, (1, 0, 2, 3)), 2), 3)  # [out, in, kh, kw]
    pads = tuple((k - 1 - lo, k - 1 - hi + e)
                 for k, (lo, hi), e in zip(g.kernel, g.crops, g.extra, strict=True))
    y = P.conv(dilate(P, x, g.stride), flipped, (1, 1), pads, (1, 1))
    return y if bias is None else P.add(y, per_channel(P, bias, 4))


# ---- upsampling -----------------------------------------------------------------------------


def _upsample_type(x: TensorType, *, scale: Size, **_: Any) -> TensorType:
    h, w = _spatial("upsample", x)
    sh, sw = sizes("upsample", "scale", scale, 2)
    return x.with_shape((*x.shape[:2], h * sh, w * sw))


def _phases(P: Any, x: Any, axis: int, scale: int, mode: str) -> list[Any]:
    """The `scale` arrays whose interleaving along `axis` is the upsampled x: output index
    i·scale + r reads (1 − |d|)·x[i] + |d|·x[i ± 1], d = (r + ½)/scale − ½, edges repeated."""
    if mode == "nearest":
        return [x] * scale
    n = P.shape(x)[axis]
    nxt = P.concat([P.slice(x, axis, 1, n), P.slice(x, axis, n - 1, n)], axis) if n > 1 else x
    prev = P.concat([P.slice(x, axis, 0, 1), P.slice(x, axis, 0, n - 1)], axis) if n > 1 else x
    out = []
    for r in range(scale):
        d = (r + 0.5) / scale - 0.5
        near = nxt if d > 0 else prev
        out.append(x if d == 0 else P.add(P.mul(1.0 - abs(d), x), P.mul(abs(d), near)))
    return out


def _upsample_axis(P: Any, x: Any, axis: int, scale: int, mode: str) -> Any:
    """x enlarged `scale` times along spatial `axis` (2 or 3) of [N, C, H, W]."""
    if scale == 1:
        return x
    shape = list(P.shape(x))
    unit = (*shape[:axis + 1], 1, *shape[axis + 1:])  # a new axis after `axis` for the phase
    unit = tuple(None if i < 2 else d for i, d in enumerate(unit))
    phases = [P.reshape(p, unit) for p in _phases(P, x, axis, scale, mode)]
    merged = [None, None, *shape[2:]]
    merged[axis] = shape[axis] * scale
    return P.reshape(P.concat(phases, axis + 1), tuple(merged))


@layer_op("upsample", infer=_upsample_type, samples=(((2, 3, 4, 5),),),
          sample_params={"scale": (2, 3), "mode": "bilinear"})
def upsample(P: Any, x: Any, *, scale: Size, mode: Literal["nearest", "bilinear"] = "nearest"
             ) -> Any:
    """y[i, j] = x at ((i + ½)/s − ½, (j + ½)/t − ½), bilinear, or x[⌊i/s⌋, ⌊j/t⌋] (nearest)."""
    sh, sw = sizes("upsample", "scale", scale, 2)
    return _upsample_axis(P, _upsample_axis(P, x, 2, sh, mode), 3, sw, mode)
