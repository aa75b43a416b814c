"""Serve a model nndsl exported, with onnxruntime and NumPy alone: no nndsl on the machine.

    python deploy.py MODEL.onnx ROWS.csv

model.onnx holds everything needed: the graph, the trained weights, the input's name and shape,
the features' standardisation (inside the graph, so it takes raw values) and (for a classifier)
the class labels in its metadata. ROWS.csv has a header and one row per example, holding the
features in the order the model was trained on."""

import csv
import json
import sys

import numpy as np
import onnxruntime as ort


def read_rows(path: str) -> np.ndarray:
    with open(path, encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return np.array([[float(cell) for cell in row] for row in rows[1:]], dtype=np.float32)


def class_labels(text: str | None) -> list[str] | None:
    """The labels in class-id order: comma-separated, or a JSON list when a label has a comma."""
    if not text:
        return None
    return json.loads(text) if text.startswith("[") else text.split(",")


def main(model_path: str, rows_path: str) -> None:
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    labels = class_labels(meta.get("class_labels"))
    (model_input,) = session.get_inputs()
    x = read_rows(rows_path).reshape(-1, *model_input.shape[1:])  # [rows, features]
    probs = session.run(None, {model_input.name: x})[0]  # the first output: [rows, classes]
    for i, p in enumerate(probs):
        best = int(np.argmax(p))
        name = labels[best] if labels else str(best)
        print(f"row {i}: class {best} ({name}), probability {p[best]:.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
