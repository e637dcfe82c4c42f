"""Exporters of qpm-zoo checkpoints (ONNX first). Run from a clone: `python -m export COMMAND ...`."""
