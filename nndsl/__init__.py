"""nndsl: a declarative neural-network compiler (text spec -> checked IR -> NumPy/torch/ONNX)."""

__version__ = "0.1.0"
