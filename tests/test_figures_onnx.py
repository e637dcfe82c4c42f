"""Figures from an ONNX checkpoint, without torch, on a model whose feature maps are known.

The checkpoint's graph is built here with onnx.helper: each feature is a colour detector on
8 × 8 pixel cells (average pool, 1 × 1 convolution, ReLU), so on a constructed image we know
where every map must peak, and the figure's heatmap must put its maximum on those pixels of
the image it shows, through preprocessing (resize and centre crop), onnxruntime and upsampling.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_figures import assert_png
from test_torch_free import run_without_torch

from qpm_zoo import Assignment, BackboneConfig, InputError, PreprocessConfig, QPMConfig, QPMOnnx
from qpm_zoo.onnx_model import OnnxRecord
from qpm_zoo.viz import (
    comparison_figure,
    explanation_figure,
    find_images,
    most_similar_pair,
    pick_class_examples,
    save_figure,
    write_figures,
)
from qpm_zoo.viz.gallery import FIGURE_NAMES

onnx = pytest.importorskip("onnx")

SIZE, CELL = 64, 8  #: model input side and the pixels of one map cell
FEATURES = ("red patch", "green patch", "blue patch", "white patch")
#: 1 × 1 convolution on normalised RGB in [-1, 1]: each detector is positive only on its colour.
DETECTORS = np.array([[1, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, 1]], dtype=np.float32)
DETECTOR_BIAS = np.array([-1, -1, -1, -2], dtype=np.float32)
COLOURS = {0: (230, 20, 20), 1: (20, 230, 20), 2: (20, 20, 230), 3: (255, 255, 255)}
LABELS = ("Cardinal", "Parrot", "Blue Jay", "Kingfisher")
CLASS_FEATURES = ((0, 3), (0, 1), (2, 3), (1, 2))


def _graph(weight: np.ndarray, bias: np.ndarray, mean: np.ndarray, std: np.ndarray) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    n, classes = len(FEATURES), weight.shape[0]
    inits = [
        numpy_helper.from_array(DETECTORS.reshape(n, 3, 1, 1), "detectors"),
        numpy_helper.from_array(DETECTOR_BIAS, "detector_bias"),
        numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "spatial"),
        numpy_helper.from_array(mean.astype(np.float32), "mean"),
        numpy_helper.from_array(std.astype(np.float32), "std"),
        numpy_helper.from_array(weight.T.astype(np.float32), "class_weight"),
        numpy_helper.from_array(bias.astype(np.float32), "class_bias"),
    ]
    nodes = [
        helper.make_node(
            "AveragePool",
            ["pixel_values"],
            ["cells"],
            kernel_shape=[CELL, CELL],
            strides=[CELL, CELL],
        ),
        helper.make_node("Conv", ["cells", "detectors", "detector_bias"], ["detected"]),
        helper.make_node("Relu", ["detected"], ["feature_maps"]),
        helper.make_node("ReduceMean", ["feature_maps", "spatial"], ["pooled"], keepdims=0),
        helper.make_node("Sub", ["pooled", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["features"]),
        helper.make_node("MatMul", ["features", "class_weight"], ["weighted"]),
        helper.make_node("Add", ["weighted", "class_bias"], ["logits"]),
    ]
    h = SIZE // CELL
    graph = helper.make_graph(
        nodes,
        "colour_detectors",
        [
            helper.make_tensor_value_info(
                "pixel_values", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE]
            )
        ],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n]),
            helper.make_tensor_value_info("feature_maps", TensorProto.FLOAT, ["batch", n, h, h]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def make_colour_checkpoint(folder: Path, model_type: str = "qpm") -> Path:
    """A checkpoint folder (config.json + model.onnx) of the colour-detector model."""
    n = len(FEATURES)
    weight = np.zeros((len(LABELS), n), dtype=np.float32)
    for c, row in enumerate(CLASS_FEATURES):
        weight[c, list(row)] = 1.0
    bias = None
    if model_type == "qsenn":  # Kingfisher counts green against itself
        weight[3, 1] = -0.8
        weight[:, :] *= np.where(weight > 0, 0.8, 1.0)
        bias = np.zeros(len(LABELS), dtype=np.float32)
    mean, std = np.full(n, 0.05, np.float32), np.full(n, 0.05, np.float32)
    data = _graph(weight, np.zeros(len(LABELS), np.float32) if bias is None else bias, mean, std)
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(data)
    record = OnnxRecord(
        file="model.onnx",
        opset=18,
        sha256=hashlib.sha256(data).hexdigest(),
        dtype="float32",
        input_size=(3, SIZE, SIZE),
        feature_map_size=(SIZE // CELL, SIZE // CELL),
        exporter={"built_by": "tests/test_figures_onnx.py (colour detectors, onnx.helper)"},
    )
    config = QPMConfig(
        model_type=model_type,
        backbone=BackboneConfig(name="colour-detectors", num_features=n),
        num_classes=len(LABELS),
        selected_features=tuple(range(n)),
        k=2,
        assignment=Assignment.from_matrix(weight, bias),
        label_names=LABELS,
        preprocessing=PreprocessConfig(
            input_size=(3, SIZE, SIZE),
            interpolation="bilinear",
            crop_pct=0.875,
            mean=(0.5,) * 3,
            std=(0.5,) * 3,
        ),
        feature_names=FEATURES,
        onnx=record.to_dict(),
    )
    config.save(folder / "config.json")
    return folder


def patches_image(
    path: Path, patches: dict[int, tuple[int, int]], size=(120, 100), side=30
) -> Path:
    """A dark non-square image with a `side`-pixel square of each feature's colour at (x, y)."""
    pixels = np.full((size[1], size[0], 3), 25, dtype=np.uint8)
    for feature, (x, y) in patches.items():
        pixels[y : y + side, x : x + side] = COLOURS[feature]
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def colour_dir(tmp_path_factory) -> Path:
    return make_colour_checkpoint(tmp_path_factory.mktemp("colour") / "qpm")


@pytest.fixture(scope="module")
def colour_images(tmp_path_factory) -> Path:
    """One image per class, showing that class's two colours (and sub-folders, to be searched)."""
    folder = tmp_path_factory.mktemp("colour_images")
    (folder / "more").mkdir()
    spots = [(10, 10), (75, 55)]
    for c, (label, row) in enumerate(zip(LABELS, CLASS_FEATURES)):
        where = folder / "more" if c % 2 else folder
        patches_image(where / f"{label.replace(' ', '_')}.png", dict(zip(row, spots)))
    (folder / "notes.txt").write_text("not an image")
    return folder


def _heat(fig, feature_name: str) -> tuple[np.ndarray, np.ndarray]:
    """(view, heat) arrays drawn in the panel whose title starts with `feature_name`."""
    for ax in fig.axes:
        if ax.get_title().split("\n")[0] == feature_name and len(ax.get_images()) == 2:
            grey, heat = ax.get_images()
            return grey.get_array(), np.asarray(heat.get_array())
    raise AssertionError(f"no panel titled {feature_name!r}")


def test_heatmap_peaks_on_the_pixels_where_the_feature_is(colour_dir, tmp_path):
    model = QPMOnnx.from_pretrained(colour_dir, providers=["CPUExecutionProvider"])
    image = patches_image(tmp_path / "cardinal.png", {0: (12, 18), 3: (78, 52)})
    fig = explanation_figure(model, image)
    assert fig.axes[0].get_images()[0].get_array().shape == (SIZE, SIZE, 3)  # the model input
    view = fig.axes[0].get_images()[0].get_array()
    for feature in (0, 3):
        _, heat = _heat(fig, FEATURES[feature])
        assert heat.shape == (SIZE, SIZE) and heat.max() == pytest.approx(1.0)
        y, x = np.unravel_index(np.argmax(heat), heat.shape)
        # Under the hottest pixel the image shows the feature's colour ...
        assert np.abs(view[y, x].astype(int) - COLOURS[feature]).max() < 40, (feature, view[y, x])
        # ... and it lies in a cell where the ONNX model's map peaks.
        maps = model.forward_arrays(model.preprocessor(str(image))[0], with_maps=True).feature_maps[
            0, feature
        ]
        assert maps[y // CELL, x // CELL] == pytest.approx(maps.max())
    assert_png(save_figure(fig, tmp_path / "x.png", dpi=60), fig, 60)


def test_comparison_picks_each_class_example_and_aligns_maps(colour_dir, colour_images):
    model = QPMOnnx.from_pretrained(colour_dir, providers=["CPUExecutionProvider"])
    files = find_images(colour_images)
    assert len(files) == 4 and all(f.suffix == ".png" for f in files)  # notes.txt skipped
    a, b = pick_class_examples(model, files, ["Cardinal", "Kingfisher"])
    assert (a.prediction.label, b.prediction.label) == ("Cardinal", "Kingfisher")
    assert Path(a.name).name == "Cardinal.png" and Path(b.name).name == "Kingfisher.png"
    fig = comparison_figure(model, "Cardinal", "Kingfisher", [a, b])
    titles = [ax.get_title().strip() for ax in fig.axes]
    # Cardinal = red + white, Kingfisher = green + blue: nothing shared, two features each.
    assert sorted(t for t in titles if t in FEATURES) == sorted(FEATURES)
    groups = [sf._suptitle.get_text() for sf in fig.subfigs]
    assert groups[1:] == ["shared", "only A: Cardinal", "only B: Kingfisher"]
    # Both rows of a column share one scale: red fires on Cardinal's image only.
    red = next(ax for ax in fig.axes if ax.get_images() and ax.get_title().strip() == "red patch")
    group = red.get_figure(root=False)
    column = [
        ax for ax in group.axes if ax.get_position().x0 == pytest.approx(red.get_position().x0)
    ]
    assert len(column) == 2
    heats = [np.asarray(ax.get_images()[1].get_array()) for ax in column]
    assert max(h.max() for h in heats) == pytest.approx(1.0) and min(h.max() for h in heats) == 0.0


def test_cli_draws_all_three_figures_without_torch(colour_dir, colour_images, tmp_path):
    image = colour_images / "Cardinal.png"
    outs = {name: tmp_path / f"{name}.png" for name in ("explain", "compare", "assignment")}
    result = run_without_torch(
        f"""
        import sys
        from qpm_zoo import cli

        model, cpu = {str(colour_dir)!r}, ["--onnx", "--providers", "CPUExecutionProvider"]
        assert cli.main(["explain", model, {str(image)!r}, "--out", {str(outs["explain"])!r}, *cpu]) == 0
        assert cli.main(["compare", model, "Parrot", "Blue Jay", "--images", {str(colour_images)!r},
                         "--out", {str(outs["compare"])!r}, *cpu]) == 0
        assert cli.main(["assignment", model, "--out", {str(outs["assignment"])!r}]) == 0
        assert not any(m.split(".")[0] in ("torch", "timm") for m in sys.modules), "torch was imported"
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        f"{image}: Cardinal"
    )  # the prediction, as qpm predict prints it
    for path in outs.values():
        assert f"figure: {path}\n" in result.stdout
    assert "example of Blue Jay" in result.stdout
    for path in outs.values():
        with Image.open(path) as png:
            assert png.format == "PNG" and min(png.size) > 300


def test_qsenn_negative_weight_is_drawn_in_the_negative_colours(tmp_path):
    from qpm_zoo.viz.panels import NEGATIVE_CMAP, POSITIVE_CMAP

    folder = make_colour_checkpoint(tmp_path / "qsenn", "qsenn")
    model = QPMOnnx.from_pretrained(folder, providers=["CPUExecutionProvider"])
    image = patches_image(tmp_path / "kingfisher.png", {2: (75, 55)})  # blue, and no green
    pred = model.predict(image)
    assert pred.label == "Kingfisher"
    weights = {f.name: f.weight for f in pred.explanation.features}
    assert weights["green patch"] < 0 < weights["blue patch"], weights
    fig = explanation_figure(model, image)
    for name, cmap in (("green patch", NEGATIVE_CMAP), ("blue patch", POSITIVE_CMAP)):
        panel = next(ax for ax in fig.axes if ax.get_title().startswith(name))
        assert panel.get_images()[1].get_cmap().name == cmap
        assert f"{weights[name]:+.2f} × activation" in panel.get_title()
    assert "cool colours: weight < 0" in " ".join(fig._supxlabel.get_text().split())
    assert json.loads(json.dumps(pred.to_dict()))["label"] == pred.label


def test_write_figures_draws_the_clearest_image_and_the_most_similar_pair(
    colour_dir, colour_images, tmp_path
):
    model = QPMOnnx.from_pretrained(colour_dir, providers=["CPUExecutionProvider"])
    # Every pair of classes shares at most one feature; the first such pair is Cardinal-Parrot.
    assert most_similar_pair(model) == (0, 1)
    assert most_similar_pair(model, ["Kingfisher", "Blue Jay", "Parrot"]) == (1, 3)
    written = write_figures(model, colour_images, tmp_path / "figures", dpi=40)
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(FIGURE_NAMES)
    for path in written.values():
        with Image.open(path) as png:
            assert png.format == "PNG"
    with pytest.raises(InputError, match=r"all 1 images are predicted as 'Kingfisher'"):
        write_figures(model, [colour_images / "more" / "Kingfisher.png"], tmp_path / "none")
    assert not (tmp_path / "none").exists()
