"""Write a small flower-measurement data set: flowers.csv (240 labelled rows to train on),
test.csv (60 labelled rows kept apart) and new.csv (5 unlabelled rows to predict).

Three species, four measurements in centimetres, one row per flower; the species is written as
text (setosa, versicolor, virginica). Replace these files by your own: one column per feature,
one column with the class (text or 0, 1, 2, ...), a header naming them."""

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
# typical measurements of each species (mean, and spread)
MEANS = np.array([[5.0, 3.4, 1.5, 0.25], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.6, 2.0]])
SPREAD = np.array([0.45, 0.4, 0.5, 0.25])
SPECIES = ["setosa", "versicolor", "virginica"]


def flowers(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    species = rng.integers(0, 3, n)
    return np.round(MEANS[species] + SPREAD * rng.standard_normal((n, 4)), 1), species


def write(path: Path, x: np.ndarray, species: np.ndarray | None) -> None:
    header = COLUMNS + (["species"] if species is not None else [])
    lines = [",".join(header)]
    for i, row in enumerate(x):
        cells = [f"{v:.1f}" for v in row] + ([SPECIES[species[i]]] if species is not None
                                             else [])
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    rng = np.random.default_rng(7)
    x, y = flowers(rng, 300)
    write(HERE / "flowers.csv", x[:240], y[:240])
    write(HERE / "test.csv", x[240:], y[240:])
    write(HERE / "new.csv", flowers(rng, 5)[0], None)
    print("wrote flowers.csv (240 rows), test.csv (60 rows) and new.csv (5 rows)")


if __name__ == "__main__":
    main()
