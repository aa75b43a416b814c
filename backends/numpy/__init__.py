"""The NumPy reference backend (pure NumPy: no torch, no onnx)."""
