"""The `qpm` command: predict, explain and compare with a checkpoint folder or Hub id.

`--json` prints exactly the results' `to_dict()` (a list for several images), so programs can
read it; without it the output is for people. Errors print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

from .errors import QPMError
from .version import __version__


def _add_source_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="checkpoint folder or Hugging Face Hub repo id")
    p.add_argument("--revision", help="Hub branch, tag or commit (default: main)")
    p.add_argument("--json", action="store_true", help="print JSON (the results' to_dict())")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qpm",
        description="Predict with and explain globally interpretable classifiers (QPM, Q-SENN).",
    )
    parser.add_argument("--version", action="version", version=f"qpm-zoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("predict", help="classify images; each prediction with its exact explanation")
    _add_source_options(p)
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    p.add_argument("--top-k", type=int, default=5, help="runner-up classes to list (default 5)")
    p.add_argument("--onnx", action="store_true", help="run model.onnx with onnxruntime (no torch)")
    p.add_argument(
        "--providers", type=lambda text: [v.strip() for v in text.split(",") if v.strip()],
        metavar="NAMES", help="with --onnx: onnxruntime providers, comma-separated, best first "
        "(default CUDAExecutionProvider,CPUExecutionProvider)",
    )
    p.add_argument(
        "--verbose", action="store_true",
        help="with --onnx: show onnxruntime's own warnings (e.g. why CUDA did not start)",
    )
    p.add_argument("--device", default="cpu", help="torch device for the PyTorch model (default cpu)")

    p = sub.add_parser("explain", help="a class's features and which classes share them")
    _add_source_options(p)
    p.add_argument("target", metavar="CLASS", help="class name or index")

    p = sub.add_parser("compare", help="two classes feature by feature: shared, only A, only B")
    _add_source_options(p)
    p.add_argument("class_a", metavar="CLASS_A")
    p.add_argument("class_b", metavar="CLASS_B")
    return parser


def _load_predictor(args: argparse.Namespace) -> Any:
    if args.onnx:
        from .onnx_model import QPMOnnx

        return QPMOnnx.from_pretrained(
            args.model, revision=args.revision, providers=args.providers, verbose=args.verbose
        )
    import qpm_zoo

    return qpm_zoo.QPM.from_pretrained(args.model, revision=args.revision, map_location=args.device)


def _load_explainer(args: argparse.Namespace) -> Any:
    from .explain import GlobalExplainer

    return GlobalExplainer.from_pretrained(args.model, revision=args.revision)


def _shared(names: Sequence[str], limit: int = 4) -> str:
    if not names:
        return "used by no other class"
    shown = ", ".join(names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"shared with {shown}{more}"


def _print_prediction(pred: Any) -> None:
    e = pred.explanation
    print(f"{pred.input}: {pred.label}  (p={pred.probability:.3f}, logit {pred.logit:.3f})")
    print("  top: " + " | ".join(f"{s.label} {s.probability:.3f}" for s in pred.top_k))
    bias = f" {e.bias:+.3f} (bias)" if e.bias else ""
    print(f"  logit {e.logit:.3f} ={bias} sum of {len(e.features)} feature contributions:")
    for f in e.features:
        weight = "" if f.weight == 1.0 else f" × weight {f.weight:+.3f}"
        print(
            f"    {f.contribution:+8.3f}  {f.name} (activation {f.activation:+.3f}{weight}); "
            f"{_shared(f.shared_with)}"
        )


def _print_class(expl: Any) -> None:
    bias = f", bias {expl.bias:+.3f}" if expl.bias else ""
    print(f"{expl.label} (class {expl.class_index}) uses {len(expl.features)} features{bias}:")
    for f in expl.features:
        weight = "" if f.weight == 1.0 else f" weight {f.weight:+.3f},"
        desc = f" - {f.description}" if f.description else ""
        print(f"  {f.name} [channel {f.channel}]{desc}:{weight} {_shared(f.shared_with)}")


def _print_comparison(cmp: Any) -> None:
    a, b = cmp.class_a.label, cmp.class_b.label
    print(f"{a} vs {b}")

    def line(title: str, items: Sequence[Any], weights: str) -> None:
        if not items:
            print(f"  {title}: none")
            return
        parts = []
        for f in items:
            if weights == "both" and (f.weight_a != 1.0 or f.weight_b != 1.0):
                parts.append(f"{f.name} ({f.weight_a:+.2f} / {f.weight_b:+.2f})")
            elif weights == "a" and f.weight_a != 1.0:
                parts.append(f"{f.name} ({f.weight_a:+.2f})")
            elif weights == "b" and f.weight_b != 1.0:
                parts.append(f"{f.name} ({f.weight_b:+.2f})")
            else:
                parts.append(f.name)
        print(f"  {title}: " + ", ".join(parts))

    line("shared", cmp.shared, "both")
    line(f"only {a}", cmp.only_a, "a")
    line(f"only {b}", cmp.only_b, "b")


def _emit(results: Any, as_json: bool, printer: Any) -> None:
    if as_json:
        data = [r.to_dict() for r in results] if isinstance(results, list) else results.to_dict()
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    for r in results if isinstance(results, list) else [results]:
        printer(r)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "predict":
            missing = [p for p in args.images if not os.path.isfile(p)]
            if missing:
                raise QPMError(f"{missing[0]}: no such image file")
            if args.top_k < 1:
                raise QPMError(f"--top-k must be at least 1, got {args.top_k}")
            if not args.onnx and (args.providers or args.verbose):
                raise QPMError("--providers and --verbose apply to --onnx only")
            model = _load_predictor(args)
            preds = model.predict(list(args.images), top_k=args.top_k)
            _emit(preds if len(preds) > 1 else preds[0], args.json, _print_prediction)
        elif args.command == "explain":
            _emit(_load_explainer(args).explain_class(args.target), args.json, _print_class)
        elif args.command == "compare":
            model = _load_explainer(args)
            _emit(model.compare(args.class_a, args.class_b), args.json, _print_comparison)
    except QPMError as e:
        print(f"qpm {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `qpm ... | head`: stop quietly like other command-line tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
