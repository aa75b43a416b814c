"""Write nndsl/data/digits.npz from scikit-learn's bundled copy of the UCI 8x8 digits.

Run once by a maintainer (`.venv/bin/pip install scikit-learn`, then
`.venv/bin/python tools/make_digits.py`); the file is committed and nndsl itself never imports
scikit-learn. The data ships inside the scikit-learn package, so nothing is downloaded.

Contents: `X` float32 [1797, 1, 8, 8] (NCHW, pixel counts 0..16 divided by 16, so in [0, 1]) and
`y` int64 [1797] (the digit, 0..9), in scikit-learn's order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "nndsl" / "data" / "digits.npz"


def main() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    np.savez_compressed(OUT, X=x, y=y)
    print(f"wrote {OUT} (X {x.shape} {x.dtype}, y {y.shape} {y.dtype})")


if __name__ == "__main__":
    main()
