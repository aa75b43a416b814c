"""loss.png: training and validation loss per epoch, drawn with NumPy and written as a PNG
(zlib + struct), so a run directory gets its curve without a plotting library."""

from __future__ import annotations

import struct
import zlib

import numpy as np

WIDTH, HEIGHT, MARGIN = 640, 400, 48
COLORS = {"loss": (31, 119, 180), "val_loss": (255, 127, 14)}
# 3x5 glyphs for the axis labels and the legend: each row is 3 bits, top row first
GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001001001001", "8": "111101111101111",
    "9": "111101111001111", ".": "000000000000010", "-": "000000111000000",
    "e": "000111111100111", "l": "100100100100111", "o": "000111101101111",
    "s": "000111110011111", "v": "000101101101010", "a": "000111011101111",
    "_": "000000000000111", "p": "111101111100100", "c": "000111100100111",
    "h": "100100111101101", " ": "000000000000000",
}


def _text(img: np.ndarray, x: int, y: int, text: str, color: tuple[int, int, int],
          scale: int = 2) -> None:
    for i, ch in enumerate(text):
        bits = GLYPHS.get(ch, GLYPHS[" "])
        for r in range(5):
            for c in range(3):
                if bits[r * 3 + c] == "1":
                    x0, y0 = x + (i * 4 + c) * scale, y + r * scale
                    img[y0:y0 + scale, x0:x0 + scale] = color


def _line(img: np.ndarray, p: tuple[float, float], q: tuple[float, float],
          color: tuple[int, int, int]) -> None:
    steps = int(max(abs(q[0] - p[0]), abs(q[1] - p[1]))) + 1
    xs = np.linspace(p[0], q[0], steps).round().astype(int)
    ys = np.linspace(p[1], q[1], steps).round().astype(int)
    for dy in (0, 1):
        img[np.clip(ys + dy, 0, HEIGHT - 1), np.clip(xs, 0, WIDTH - 1)] = color


def render(series: dict[str, list[float]]) -> np.ndarray:
    img = np.full((HEIGHT, WIDTH, 3), 255, dtype=np.uint8)
    values = [v for s in series.values() for v in s if np.isfinite(v)]
    if not values:
        return img
    lo, hi = min(values), max(values)
    hi = hi if hi > lo else lo + 1.0
    n = max(len(s) for s in series.values())
    left, right, top, bottom = MARGIN + 24, WIDTH - MARGIN, MARGIN, HEIGHT - MARGIN

    def point(i: int, v: float) -> tuple[float, float]:
        x = left + (right - left) * (i / max(n - 1, 1))
        return x, bottom - (bottom - top) * (v - lo) / (hi - lo)

    _line(img, (left, top), (left, bottom), (0, 0, 0))
    _line(img, (left, bottom), (right, bottom), (0, 0, 0))
    for key, s in series.items():
        pts = [point(i, v) for i, v in enumerate(s) if np.isfinite(v)]
        for a, b in zip(pts, pts[1:], strict=False):
            _line(img, a, b, COLORS.get(key, (80, 80, 80)))
        _text(img, right - 120, top + 16 * list(series).index(key), key, COLORS.get(key, (0, 0, 0)))
    _text(img, 4, top, f"{hi:.3g}", (0, 0, 0))
    _text(img, 4, bottom - 10, f"{lo:.3g}", (0, 0, 0))
    _text(img, right - 60, bottom + 12, f"epoch {n}", (0, 0, 0))
    return img


def png_bytes(img: np.ndarray) -> bytes:
    raw = b"".join(b"\x00" + row.tobytes() for row in img)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", img.shape[1], img.shape[0], 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def plot_losses(series: dict[str, list[float]]) -> bytes:
    """loss.png's bytes: the epoch curves of `series`."""
    return png_bytes(render({k: v for k, v in series.items() if v}))
