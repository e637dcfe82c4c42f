"""The `qpm` command: predict, explain and compare with a checkpoint folder or Hub id, and draw
figures of explanations (`--out FILE.png`, `qpm assignment`).

`--json` prints exactly the results' `to_dict()` (a list for several images), so programs can
read it; without it the output is for people. Errors print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .commands import Command, run_commands
from .errors import InputError, UsageError
from .formatting import format_class, format_comparison, format_prediction
from .version import __version__

if TYPE_CHECKING:
    from .explain import GlobalExplainer, InterpretableModel


def _add_source_options(p: argparse.ArgumentParser, json_output: bool = True) -> None:
    p.add_argument("model", metavar="MODEL", help="checkpoint folder or Hugging Face Hub repo id")
    p.add_argument("--revision", help="Hub branch, tag or commit (default: main)")
    if json_output:
        p.add_argument("--json", action="store_true", help="print JSON (the results' to_dict())")


def _add_backend_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--onnx", action="store_true", help="run model.onnx with onnxruntime (no torch)")
    p.add_argument(
        "--providers",
        type=lambda text: [v.strip() for v in text.split(",") if v.strip()],
        metavar="NAMES",
        help="with --onnx: onnxruntime providers, comma-separated, best first "
        "(default CUDAExecutionProvider,CPUExecutionProvider)",
    )
    p.add_argument(
        "--variant",
        choices=("float16", "int8"),
        help="with --onnx: run a variant export (python -m export onnx --precision fp16, or "
        "--quantize int8) instead of the float32 model.onnx",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="with --onnx: show onnxruntime's own warnings (e.g. why CUDA did not start)",
    )
    p.add_argument(
        "--device", default="cpu", help="torch device for the PyTorch model (default cpu)"
    )


def _add_coverage_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--coverage",
        type=float,
        metavar="C",
        help="also give the conformal prediction set that holds the true class with "
        "probability C (e.g. 0.9; the checkpoint must be calibrated for C); it can be empty",
    )
    p.add_argument(
        "--never-empty",
        action="store_true",
        help="with --coverage: put the top class into an empty set; this only raises coverage "
        "above C (up to the model's accuracy)",
    )


def _predict_arguments(p: argparse.ArgumentParser) -> None:
    _add_source_options(p)
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    p.add_argument("--top-k", type=int, default=5, help="runner-up classes to list (default 5)")
    _add_coverage_option(p)
    _add_backend_options(p)


def _explain_arguments(p: argparse.ArgumentParser) -> None:
    _add_source_options(p)
    p.add_argument(
        "target", metavar="CLASS_OR_IMAGE", nargs="?", help="class name or index, or an image file"
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--class", dest="class_name", metavar="CLASS", help="explain this class")
    which.add_argument(
        "--image", metavar="IMAGE", help="explain the prediction for this image file"
    )
    p.add_argument(
        "--out",
        metavar="FILE.png",
        help="with an image: write the heatmap figure (.png, .pdf, .svg); with --coverage, "
        "the figure of the prediction set",
    )
    _add_coverage_option(p)
    _add_backend_options(p)


def _compare_arguments(p: argparse.ArgumentParser) -> None:
    _add_source_options(p)
    p.add_argument("class_a", metavar="CLASS_A")
    p.add_argument("class_b", metavar="CLASS_B")
    p.add_argument(
        "--images",
        nargs="+",
        metavar="DIR_OR_FILE",
        help="with --out: images to pick each class's example from (the one predicted as the "
        "class with the highest probability); folders are searched recursively",
    )
    p.add_argument("--out", metavar="FILE.png", help="write the comparison figure (needs --images)")
    _add_backend_options(p)


def _assignment_arguments(p: argparse.ArgumentParser) -> None:
    _add_source_options(p, json_output=False)
    p.add_argument(
        "--out", metavar="FILE.png", required=True, help="figure file (.png, .pdf, .svg)"
    )


def _torch_device(text: str) -> Any:
    """`--device` as a torch device that exists here, or a UsageError saying why not."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(
            f"--device {text!r}: not a torch device (e.g. cpu, cuda, cuda:1, mps)"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {text}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(
                f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {text}: MPS is not available on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device {text}: use cpu, cuda[:N] or mps")
    return device


def _load_predictor(args: argparse.Namespace) -> InterpretableModel:
    if args.onnx:
        from .onnx_model import QPMOnnx

        return QPMOnnx.from_pretrained(
            args.model,
            revision=args.revision,
            providers=args.providers,
            verbose=args.verbose,
            variant=args.variant,
        )
    import qpm_zoo

    model_class = qpm_zoo.QPM  # says which extra to install when torch is missing
    device = _torch_device(args.device)
    return model_class.from_pretrained(args.model, revision=args.revision, map_location=device)


def _load_explainer(args: argparse.Namespace) -> GlobalExplainer:
    from .explain import GlobalExplainer

    return GlobalExplainer.from_pretrained(args.model, revision=args.revision)


def _emit(results: Any, as_json: bool, formatter: Callable[[Any], str]) -> None:
    if as_json:
        data = [r.to_dict() for r in results] if isinstance(results, list) else results.to_dict()
        json.dump(data, sys.stdout, indent=2, allow_nan=False)  # bare NaN is not JSON
        sys.stdout.write("\n")
        return
    print("\n\n".join(formatter(r) for r in (results if isinstance(results, list) else [results])))


def _check_backend_options(args: argparse.Namespace) -> None:
    if not args.onnx and (args.providers or args.verbose or args.variant):
        raise UsageError("--providers, --variant and --verbose apply to --onnx only")
    if args.onnx and args.device != "cpu":
        raise UsageError("--device applies to the PyTorch model; with --onnx give --providers")


def _check_image_file(path: str) -> None:
    if os.path.isdir(path):
        raise UsageError(f"{path}: is a folder, not an image file")
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such image file")


def _check_writable(out: str) -> None:
    """Before any work: the figure can be written (its folder, or the nearest existing folder
    above it, which saving creates the rest in, is writable)."""
    from .viz import check_figure_path

    path, _ = check_figure_path(out)
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UsageError(f"{out}: {folder} is a file, so no folder can be made there")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{out}: cannot write into the folder {folder} (permission denied)")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{out}: exists and cannot be overwritten (permission denied)")


def _note_figure(path: Any, as_json: bool) -> None:
    if not as_json:  # stdout then carries only the JSON document
        print(f"figure: {path}")


#: Classifying more images than this takes long enough to say so first.
_ANNOUNCE_IMAGES = 32


def _explain_target(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(image, class) from the positional argument, --image or --class; exactly one is set."""
    given = [v for v in (args.target, args.image, args.class_name) if v is not None]
    if len(given) != 1:
        raise UsageError(
            "give one class or one image: qpm explain MODEL CLASS_OR_IMAGE "
            "(or --class NAME, or --image FILE)"
        )
    if args.image is not None:
        _check_image_file(args.image)
        return args.image, None
    if args.class_name is not None:
        return None, args.class_name
    if os.path.isdir(args.target):
        raise UsageError(f"{args.target}: is a folder, not an image file or a class name")
    return (args.target, None) if os.path.isfile(args.target) else (None, args.target)


def _looks_like_image_path(text: str) -> bool:
    """A folder in it or an image extension: a mistyped file rather than a class name."""
    from .preprocess import IMAGE_EXTENSIONS

    return "/" in text or os.sep in text or text.lower().endswith(IMAGE_EXTENSIONS)


def _explain(args: argparse.Namespace) -> None:
    _check_backend_options(args)
    image, class_name = _explain_target(args)
    if class_name is not None:
        if args.coverage is not None or args.never_empty:
            raise UsageError("--coverage gives an image's prediction set: give an image file")
        if args.out:
            raise UsageError(
                "--out draws the explanation of an image's prediction: give an image file "
                "(qpm explain MODEL IMAGE --out FILE.png); qpm assignment draws all classes"
            )
        try:
            result = _load_explainer(args).explain_class(class_name)
        except InputError:
            if args.target == class_name and _looks_like_image_path(class_name):
                raise UsageError(
                    f"{class_name}: no such image file, and no class of that name"
                ) from None
            raise
        _emit(result, args.json, format_class)
        return
    if not args.out:
        prediction = _load_predictor(args).predict(
            image, coverage=args.coverage, never_empty=args.never_empty
        )
        _emit(prediction, args.json, format_prediction)
        return
    from .viz import explanation_figure, prediction_set_figure, save_figure

    _check_writable(args.out)
    model = _load_predictor(args)
    item = model.predict_with_maps(image, coverage=args.coverage, never_empty=args.never_empty)[0]
    figure = explanation_figure if args.coverage is None else prediction_set_figure
    path = save_figure(figure(model, item), args.out)
    _emit(item.prediction, args.json, format_prediction)
    _note_figure(path, args.json)


def _compare(args: argparse.Namespace) -> None:
    _check_backend_options(args)
    comparison = _load_explainer(args).compare(args.class_a, args.class_b)
    if args.out is None and args.images is None:
        _emit(comparison, args.json, format_comparison)
        return
    if args.out is None:
        raise UsageError("--images gives the example images of the figure: add --out FILE.png")
    if args.images is None:
        raise UsageError("--out draws the features on example images: add --images DIR_OR_FILE ...")
    from .viz import (
        class_pair,
        comparison_figure,
        find_images,
        pick_class_examples,
        save_figure,
    )

    _check_writable(args.out)
    files = find_images(args.images)
    model = _load_predictor(args)
    pair = class_pair(model, args.class_a, args.class_b)
    if len(files) > _ANNOUNCE_IMAGES:
        print(f"classifying {len(files)} images to pick the examples ...", file=sys.stderr)
    examples = pick_class_examples(model, files, pair)
    path = save_figure(comparison_figure(model, *pair, examples), args.out)
    _emit(comparison, args.json, format_comparison)
    if not args.json:
        for label, example in zip((comparison.class_a.label, comparison.class_b.label), examples):
            print(f"  example of {label}: {example.name} (p={example.prediction.probability:.3f})")
    _note_figure(path, args.json)


def _assignment(args: argparse.Namespace) -> None:
    from .viz import assignment_figure, save_figure

    _check_writable(args.out)
    _note_figure(save_figure(assignment_figure(_load_explainer(args)), args.out), False)


def _predict(args: argparse.Namespace) -> None:
    for path in args.images:
        _check_image_file(path)
    if args.top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {args.top_k}")
    _check_backend_options(args)
    model = _load_predictor(args)
    preds = model.predict(
        list(args.images), top_k=args.top_k, coverage=args.coverage, never_empty=args.never_empty
    )
    _emit(preds if len(preds) > 1 else preds[0], args.json, format_prediction)


def _schema(args: argparse.Namespace) -> None:
    from .config import json_schema

    json.dump(json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")


COMMANDS: dict[str, Command | str] = {
    "predict": Command(
        "classify images; each prediction with its exact explanation", _predict_arguments, _predict
    ),
    "explain": Command(
        "a class's features and which classes share them; or an image's prediction, "
        "drawn as heatmaps with --out",
        _explain_arguments,
        _explain,
        description="qpm explain MODEL CLASS: the class's features (from config.json only). "
        "qpm explain MODEL IMAGE [--out FILE.png]: the prediction for the image with its exact "
        "explanation, and with --out a figure of where each of the class's features fires. "
        "A positional argument that is an existing file is an image; use --class or --image "
        "when a name is ambiguous.",
    ),
    "compare": Command(
        "two classes feature by feature: shared, only A, only B; drawn on example images "
        "with --images and --out",
        _compare_arguments,
        _compare,
    ),
    "assignment": Command(
        "draw the class × feature assignment matrix (needs only config.json)",
        _assignment_arguments,
        _assignment,
    ),
    "schema": Command("print config.json's JSON Schema", lambda p: None, _schema),
    "app": "qpm_zoo.app.command",
}


def main(argv: Sequence[str] | None = None) -> int:
    return run_commands(
        "qpm",
        "Predict with and explain globally interpretable classifiers (QPM, Q-SENN).",
        COMMANDS,
        argv,
        version=f"qpm-zoo {__version__}",
    )


if __name__ == "__main__":
    sys.exit(main())
