"""Write small grey-scale images of three shapes, 12 x 12 pixels, channels first as the model
reads them: shapes.npz (x [600, 1, 12, 12] float32, y [600] class ids) to train on,
shapes_test.npz (150 more) to evaluate, and new_images.npy (4 images) to predict.

Classes: 0 a horizontal bar, 1 a vertical bar, 2 a square outline; each drawn at a random place
and size, with noise. Your own images go in the same layout: [images, channels, height, width]."""

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZE = 12


def image(rng: np.random.Generator, kind: int) -> np.ndarray:
    img = np.zeros((SIZE, SIZE), np.float32)
    length = int(rng.integers(5, 10))
    r, c = (int(v) for v in rng.integers(1, SIZE - length, 2))
    if kind == 0:
        img[r, c:c + length] = 1.0
    elif kind == 1:
        img[r:r + length, c] = 1.0
    else:
        img[r, c:c + length] = img[r + length - 1, c:c + length] = 1.0
        img[r:r + length, c] = img[r:r + length, c + length - 1] = 1.0
    return np.clip(img + 0.15 * rng.standard_normal(img.shape), 0.0, 1.0)[None]


def images(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 3, n)
    return np.stack([image(rng, int(k)) for k in y]).astype(np.float32), y


def main() -> None:
    rng = np.random.default_rng(3)
    x, y = images(rng, 600)
    np.savez(HERE / "shapes.npz", x=x, y=y)
    x, y = images(rng, 150)
    np.savez(HERE / "shapes_test.npz", x=x, y=y)
    np.save(HERE / "new_images.npy", images(rng, 4)[0])
    print("wrote shapes.npz (600 images), shapes_test.npz (150) and new_images.npy (4)")


if __name__ == "__main__":
    main()
