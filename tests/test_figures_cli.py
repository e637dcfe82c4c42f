"""The figure commands: `qpm explain MODEL IMAGE --out`, `qpm compare ... --images --out`,
`qpm assignment --out`, and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from test_figures import write_colour_images

from qpm_zoo.cli import main
from qpm_zoo.model import QPM


@pytest.fixture(scope="module")
def colour_images(tmp_path_factory) -> list[Path]:
    return write_colour_images(tmp_path_factory.mktemp("colours"))


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _is_png(path: Path) -> bool:
    with Image.open(path) as png:
        return png.format == "PNG" and min(png.size) > 200


def test_explain_image_writes_the_figure_and_prints_the_prediction(
    capsys, qpm_dir, image_file, tmp_path
):
    out_file = tmp_path / "figs" / "x.png"
    code, out, err = run(
        capsys, "explain", qpm_dir, "--image", image_file, "--out", out_file, "--json"
    )
    assert code == 0, err
    assert _is_png(out_file)
    # stdout carries only the JSON document: the prediction, as `qpm predict --json` prints it.
    assert json.loads(out) == QPM.from_pretrained(qpm_dir).predict(image_file).to_dict()


def test_explain_image_without_out_prints_the_prediction(capsys, qpm_dir, image_file):
    code, out, _ = run(capsys, "explain", qpm_dir, image_file)
    _, predicted, _ = run(capsys, "predict", qpm_dir, image_file)
    assert code == 0 and out == predicted and "figure:" not in out


def test_explain_class_flag_and_positional_class(capsys, qpm_dir):
    code, by_flag, _ = run(capsys, "explain", qpm_dir, "--class", "Blue Jay")
    code2, positional, _ = run(capsys, "explain", qpm_dir, "Blue Jay")
    assert code == code2 == 0 and by_flag == positional and by_flag.startswith("Blue Jay (class 2)")


def test_compare_picks_examples_from_a_folder_and_draws_them(
    capsys, qpm_dir, colour_images, tmp_path
):
    model = QPM.from_pretrained(qpm_dir)
    preds = model.predict(colour_images)
    a, b = sorted({p.label for p in preds})[:2]
    out_file = tmp_path / "c.png"
    code, out, err = run(
        capsys, "compare", qpm_dir, a, b, "--images", colour_images[0].parent, "--out", out_file
    )
    assert code == 0, err
    assert _is_png(out_file)
    assert out.startswith(f"{a} vs {b}\n") and out.endswith(f"figure: {out_file}\n")
    best = max((p for p in preds if p.label == a), key=lambda p: p.probability)
    assert f"  example of {a}: {best.input} (p={best.probability:.3f})" in out


def test_assignment_command_needs_only_the_config(capsys, qpm_dir, tmp_path):
    folder = tmp_path / "config_only"
    folder.mkdir()
    (folder / "config.json").write_bytes((qpm_dir / "config.json").read_bytes())
    code, out, err = run(capsys, "assignment", folder, "--out", tmp_path / "a.png")
    assert code == 0, err
    assert out == f"figure: {tmp_path / 'a.png'}\n" and _is_png(tmp_path / "a.png")


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["explain", "{model}", "Cardinal", "--out", "{tmp}/x.png"],
            "--out draws the explanation of an image's prediction",
        ),
        (["explain", "{model}", "Cardinal", "--class", "Blue Jay"], "give one class or one image"),
        (["explain", "{model}"], "give one class or one image"),
        (
            ["explain", "{model}", "photos/bird.jpg"],
            "photos/bird.jpg: no such image file, and no class of that name",
        ),
        (["explain", "{model}", "--image", "{tmp}/none.png"], "none.png: no such image file"),
        (
            ["explain", "{model}", "{image}", "--out", "{tmp}/x.gif2"],
            "x.gif2: cannot tell the figure format from '.gif2'",
        ),
        (["explain", "{model}", "{image}", "--out", "{tmp}"], "is a folder; give a file name"),
        (
            ["explain", "{model}", "{image}", "--providers", "CPUExecutionProvider"],
            "apply to --onnx only",
        ),
        (["compare", "{model}", "Cardinal", "Blue Jay", "--out", "{tmp}/c.png"], "add --images"),
        (
            ["compare", "{model}", "Cardinal", "Blue Jay", "--images", "{image}"],
            "add --out FILE.png",
        ),
        (
            ["compare", "{model}", "Cardinal", "0", "--images", "{image}", "--out", "{tmp}/c.png"],
            "compare two different classes; got 'Cardinal' twice",
        ),
        (
            [
                "compare",
                "{model}",
                "Cardinal",
                "Blue Jay",
                "--images",
                "{tmp}/nothing",
                "--out",
                "{tmp}/c.png",
            ],
            "nothing: no such image file or folder",
        ),
        (["assignment", "{model}/../absent", "--out", "{tmp}/a.png"], "no such checkpoint folder"),
    ],
)
def test_errors_are_one_line_and_write_nothing(
    capsys, qpm_dir, image_file, tmp_path, argv, message
):
    argv = [a.format(model=qpm_dir, image=image_file, tmp=tmp_path) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_compare_names_the_class_no_image_is_predicted_as(capsys, qpm_dir, image_file, tmp_path):
    predicted = QPM.from_pretrained(qpm_dir).predict(image_file).label
    other = next(label for label in ("Cardinal", "Blue Jay") if label != predicted)
    code, out, err = run(
        capsys,
        "compare",
        qpm_dir,
        predicted,
        other,
        "--images",
        image_file,
        "--out",
        tmp_path / "c.png",
    )
    assert code == 2 and out == ""
    assert (
        f"none of the 1 images is predicted as '{other}' (the model predicts {predicted} ×1)" in err
    )
    assert not (tmp_path / "c.png").exists()
