"""serve the explanation explorer: a local web page to upload images and browse explanations

    qpm app MODEL [--onnx] [--port P] [--host H] [--examples DIR_OR_FILE ...]
                  [--calibration DIR [--coverage 0.9]]

Needs the `[app]` extra (`pip install 'qpm-zoo[app]'`); with --onnx no torch is loaded.
"""

from __future__ import annotations

import argparse

from ..errors import UsageError

DEFAULT_PORT = 7860  #: Gradio's (and a Hugging Face Space's) port


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="checkpoint folder or Hugging Face Hub repo id")
    p.add_argument("--revision", help="Hub branch, tag or commit (default: main)")
    p.add_argument("--onnx", action="store_true", help="run model.onnx with onnxruntime (no torch)")
    p.add_argument(
        "--device", default="cpu", help="torch device for the PyTorch model (default cpu)"
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for all)",
    )
    p.add_argument(
        "--examples",
        nargs="+",
        metavar="DIR_OR_FILE",
        default=[],
        help="example images offered in the page (folders are searched recursively)",
    )

    p.add_argument(
        "--calibration",
        metavar="DIR",
        help="labelled images (one subfolder per class, named by its label) to calibrate "
        "conformal prediction sets on at start (default: the checkpoint's own calibration, "
        "if it has one); each prediction then shows its set",
    )
    p.add_argument(
        "--coverage",
        type=float,
        help="the share of sets that hold the true class (default: 0.9 with --calibration, "
        "else the checkpoint's first calibrated coverage)",
    )


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be between 1 and 65535, got {args.port}")
    from ..viz.examples import find_images
    from .loading import load_model
    from .page import require_gradio, serve

    require_gradio()  # before the model loads: a missing extra fails at once
    examples = find_images(args.examples) if args.examples else []
    model = load_model(args.model, onnx=args.onnx, revision=args.revision, device=args.device)
    coverage = _coverage(model, args)
    print(f"serving {args.model} on http://{args.host}:{args.port} (Ctrl-C stops)", flush=True)
    serve(model, host=args.host, port=args.port, examples=examples, coverage=coverage)
    return 0


def _coverage(model, args: argparse.Namespace) -> float | str:
    """The coverage of the sets the page shows, calibrating first with --calibration."""
    from .page import CALIBRATED

    if args.calibration is None:
        return CALIBRATED if args.coverage is None else args.coverage
    from ..calibration import calibrate_model

    coverage = 0.9 if args.coverage is None else args.coverage
    record = calibrate_model(model, args.calibration, [coverage])
    print(
        f"calibrated {coverage:.0%} prediction sets on {record.images} images "
        f"(threshold 1 - p <= {record.targets[0].threshold:.4f})",
        flush=True,
    )
    return coverage
