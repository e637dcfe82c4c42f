"""qpm_zoo.viz: heatmaps line up with the maps, figures show the exact explanations, files are
valid PNGs of the figure's size, and matplotlib stays optional."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import make_model, random_assignment
from PIL import Image

from qpm_zoo import Assignment, BackboneConfig, InputError, QPMConfig
from qpm_zoo.model import QPM
from qpm_zoo.viz import (
    assignment_figure,
    assignment_order,
    comparison_figure,
    explanation_figure,
    feature_heatmap,
    find_images,
    pick_class_examples,
    save_figure,
)
from qpm_zoo.viz.assignment import signed_jaccard
from qpm_zoo.viz.heatmap import normalise_map

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, fig, dpi: int) -> None:
    """`path` is a complete PNG of the figure's size at `dpi` (matplotlib truncates to pixels)."""
    assert Path(path).read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as png:
        png.verify()
    with Image.open(path) as png:
        expected = fig.get_size_inches() * dpi
        assert png.format == "PNG" and np.all(np.abs(np.array(png.size) - expected) <= 1), (
            png.size,
            expected,
        )


def _panels(fig) -> list:
    """The heatmap panels of a figure (a greyscale image with a heat image over it)."""
    return [ax for ax in fig.axes if ax.get_visible() and len(ax.get_images()) == 2]


# -- heatmaps ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "map_shape, size",
    [((2, 2), (64, 64)), ((7, 7), (224, 224)), ((28, 28), (224, 224)), ((5, 7), (73, 100))],
)
def test_heatmap_maximum_lies_in_the_cell_where_the_map_peaks(map_shape, size):
    """A map with a clear peak (every other cell at most 70 % of it; bilinear blending can move
    the maximum only when another cell comes close to the peak) keeps it over the peak's pixels."""
    rng = np.random.default_rng(sum(map_shape))
    h, w = map_shape
    for trial in range(12):
        values = rng.uniform(0.0, 0.7, map_shape).astype(np.float32)
        i, j = rng.integers(h), rng.integers(w)
        values[i, j] = 1.0
        if (
            trial % 2
        ):  # the strongest allowed rival right beside the peak, with a strong row below it
            values[i, (j + 1) % w] = 0.7
            values[(i + 1) % h, (j + 1) % w] = 0.7
        heat = feature_heatmap(values, size)
        assert heat.shape == size and heat.max() == pytest.approx(1.0)
        y, x = np.unravel_index(np.argmax(heat), size)
        rows = (np.floor(i * size[0] / h), np.ceil((i + 1) * size[0] / h))
        cols = (np.floor(j * size[1] / w), np.ceil((j + 1) * size[1] / w))
        assert rows[0] <= y < rows[1] and cols[0] <= x < cols[1], (trial, (i, j), (y, x))


def test_normalised_maps_keep_zero_and_share_a_scale():
    assert not normalise_map(np.zeros((3, 3))).any()  # a silent map is not stretched
    values = np.array([[-1.0, 0.5], [1.0, 2.0]])
    np.testing.assert_allclose(normalise_map(values), [[0.0, 0.25], [0.5, 1.0]])
    np.testing.assert_allclose(normalise_map(values, top=4.0), [[0.0, 0.125], [0.25, 0.5]])


# -- the explanation of a prediction -------------------------------------------------------------
def test_explanation_figure_shows_the_exact_explanation_and_the_maps(
    qsenn_dir, image_file, tmp_path
):
    model = QPM.from_pretrained(qsenn_dir)
    item = model.predict_with_maps(image_file)[0]
    pred = model.predict(image_file)
    assert item.prediction == pred  # the same spine: identical Prediction, maps from the same pass
    x = model.preprocessor(image_file)[0]
    import torch

    with torch.inference_mode():
        maps = model.forward_all(torch.from_numpy(x)).feature_maps[0].numpy()
    np.testing.assert_allclose(item.maps, maps, atol=1e-6)
    # The image shown is the model input itself, un-normalised.
    pixels = x[0] * model.preprocessor.std + model.preprocessor.mean
    np.testing.assert_allclose(
        item.view.transpose(2, 0, 1) / 255.0, np.clip(pixels, 0, 1), atol=0.5 / 255 + 1e-6
    )

    fig = explanation_figure(model, item)
    panels = _panels(fig)
    assert len(panels) == len(pred.explanation.features)
    for ax, f in zip(panels, pred.explanation.features):
        title = ax.get_title()
        assert title.startswith(f.name)
        assert (
            f"contribution {f.contribution:+.2f}" in title
            and f"activation {f.activation:+.2f}" in title
        )
        heat = np.asarray(ax.get_images()[1].get_array())
        np.testing.assert_allclose(heat, feature_heatmap(maps[f.index], item.view.shape[:2]))
    assert f"logit {pred.logit:.2f}" in fig._suptitle.get_text()
    assert_png(save_figure(fig, tmp_path / "e.png", dpi=50), fig, 50)


def test_explanation_with_many_features_wraps_into_rows(tmp_path, image_file):
    model = make_model("qpm", seed=4, n=10, k=8)
    fig = explanation_figure(model, image_file, columns=5)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 9 and len(_panels(fig)) == 8  # the input and 8 features, on 2 rows of 5
    assert len({round(ax.get_position().y0, 3) for ax in visible}) == 2
    width, height = fig.get_size_inches()
    assert width == pytest.approx(5 * 2.4) and height < width


# -- finding images and examples ---------------------------------------------------------------
def test_find_images_searches_folders_and_names_what_is_missing(tmp_path):
    (tmp_path / "b" / ".hidden").mkdir(parents=True)
    for name in ("b/2.JPG", "a.png", "b/.hidden/x.png", "b/.skip.png", "b/readme.md", "b/1.webp"):
        (tmp_path / name).write_bytes(b"")
    explicit = tmp_path / "b" / "readme.md"  # a file given by name is taken as it is
    assert find_images([tmp_path, explicit]) == [
        tmp_path / "a.png",
        tmp_path / "b" / "1.webp",
        tmp_path / "b" / "2.JPG",
        explicit,
    ]
    with pytest.raises(InputError, match=r"nowhere: no such image file or folder"):
        find_images(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: no image files in this folder or below"):
        find_images(str(tmp_path / "empty"))


def write_colour_images(folder: Path) -> list[Path]:
    """Plain and noisy colours: the random test model predicts several classes for them, each
    for more than one image (so "the most probable one" is a real choice)."""
    rng = np.random.default_rng(11)
    paths = []
    for c, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255), (200, 120, 0)]):
        for noise in (0, 15, 40):
            path = folder / f"colour{c}_noise{noise}.png"
            pixels = np.clip(np.array(colour) + rng.normal(0, noise, (56, 64, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(path)
            paths.append(path)
    return paths


@pytest.fixture(scope="module")
def colour_images(tmp_path_factory) -> list[Path]:
    return write_colour_images(tmp_path_factory.mktemp("colours"))


def test_examples_are_the_most_probable_images_of_each_class(qpm_dir, colour_images):
    model = QPM.from_pretrained(qpm_dir)
    preds = model.predict(colour_images)
    classes = sorted({p.class_index for p in preds})
    examples = pick_class_examples(model, colour_images, classes)
    assert len(classes) >= 2
    for c, example in zip(classes, examples):
        candidates = [p for p in preds if p.class_index == c]
        best = max(candidates, key=lambda p: p.probability)
        assert example.name == best.input and example.prediction.class_index == c
        # Recomputed in a batch of its own: equal up to float noise.
        assert example.prediction.probability == pytest.approx(best.probability, rel=1e-5)
    missing = classes[0]
    others = [path for path, p in zip(colour_images, preds) if p.class_index != missing]
    label = model.label_names[missing]
    with pytest.raises(
        InputError, match=rf"none of the {len(others)} images is predicted as '{label}'"
    ):
        pick_class_examples(model, others, [label])


def test_comparison_figure_groups_shared_and_distinguishing_features(
    qpm_dir, colour_images, tmp_path
):
    model = QPM.from_pretrained(qpm_dir)
    preds = model.predict(colour_images)
    a, b = sorted({p.class_index for p in preds})[:2]
    cmp = model.compare(a, b)
    fig = comparison_figure(model, a, b, colour_images)
    groups = {sf._suptitle.get_text(): sf for sf in fig.subfigs[1:]}
    expected = {
        "shared": cmp.shared,
        f"only A: {cmp.class_a.label}": cmp.only_a,
        f"only B: {cmp.class_b.label}": cmp.only_b,
    }
    assert set(groups) == set(expected)
    for title, features in expected.items():
        panels = _panels(groups[title])
        assert len(panels) == 2 * len(features)  # each feature on both examples
        names = [ax.get_title().strip() for ax in groups[title].axes if ax.get_title().strip()]
        assert names == [f.name for f in features] or (not features and names == [])
    row_labels = [ax.get_ylabel() for ax in fig.subfigs[0].axes]
    assert row_labels == [f"A: {cmp.class_a.label}", f"B: {cmp.class_b.label}"]
    assert_png(save_figure(fig, tmp_path / "c.png", dpi=40), fig, 40)
    with pytest.raises(InputError, match="compare two different classes"):
        comparison_figure(model, a, model.label_names[a], colour_images)


# -- the assignment ------------------------------------------------------------------------------
def _config(weight: np.ndarray, labels=None, bias=None) -> QPMConfig:
    classes, n = weight.shape
    return QPMConfig(
        model_type="qpm" if bias is None else "qsenn",
        backbone=BackboneConfig(name="resnet50", num_features=2048),
        num_classes=classes,
        selected_features=tuple(range(n)),
        k=round((weight != 0).sum() / classes),
        assignment=Assignment.from_matrix(weight, bias),
        label_names=tuple(labels or (f"species {i}" for i in range(classes))),
    )


def test_signed_jaccard_distance():
    rows = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [1, -1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    d = signed_jaccard(rows)
    assert d[0, 1] == pytest.approx(1 - 1 / 3)  # one of three features in common
    assert d[0, 2] == pytest.approx(1 - 1 / 2)  # the second feature has opposite signs
    assert d[3, 4] == 0.0 and d[0, 3] == 1.0 and np.allclose(d, d.T)


def test_assignment_order_puts_classes_that_share_features_together():
    rng = np.random.default_rng(5)
    blocks = [random_assignment(rng, 6, 8, 3) for _ in range(3)]  # 3 families, disjoint features
    weight = np.zeros((18, 24), dtype=np.float32)
    for b, block in enumerate(blocks):
        weight[6 * b : 6 * b + 6, 8 * b : 8 * b + 8] = block
    rows, cols = rng.permutation(18), rng.permutation(24)
    order = assignment_order(weight[rows][:, cols])
    family = (rows // 6)[order.classes]
    assert np.count_nonzero(np.diff(family)) == 2  # each family's classes are contiguous
    used = weight[rows][:, cols][:, order.features].any(axis=0)
    feature_family = (cols // 8)[order.features][used]
    assert np.count_nonzero(np.diff(feature_family)) == 2
    # Columns run with the rows (top-left to bottom-right).
    assert list(dict.fromkeys(family)) == list(dict.fromkeys(feature_family))


def test_assignment_figure_labels_small_models_and_scales_to_200_classes(tmp_path):
    rng = np.random.default_rng(2)
    small = _config(random_assignment(rng, 12, 16, 4), labels=[f"Warbler {i}" for i in range(12)])
    fig = assignment_figure(small)
    matrix = next(ax for ax in fig.axes if ax.get_images())
    order = assignment_order(small.weight_matrix())
    assert [t.get_text() for t in matrix.get_yticklabels()] == [
        f"Warbler {c}" for c in order.classes
    ]
    assert [t.get_text() for t in matrix.get_xticklabels()] == [
        f"feature {j}" for j in order.features
    ]
    drawn = np.asarray(matrix.get_images()[0].get_array())
    np.testing.assert_array_equal(
        drawn, small.weight_matrix()[np.ix_(order.classes, order.features)] != 0
    )
    assert_png(save_figure(fig, tmp_path / "small.png", dpi=40), fig, 40)

    big = _config(random_assignment(rng, 200, 50, 5))
    fig = assignment_figure(big)
    width, height = fig.get_size_inches()
    assert 8 <= width <= 16 and 12 <= height <= 22  # readable, and not a poster
    matrix = next(ax for ax in fig.axes if ax.get_images())
    assert matrix.get_yticklabels() == [] or all(not t.get_text() for t in matrix.get_yticklabels())
    assert [t.get_text() for t in matrix.get_xticklabels()][:1] == [
        f"feature {assignment_order(big.weight_matrix()).features[0]}"
    ]
    assert_png(save_figure(fig, tmp_path / "big.png", dpi=20), fig, 20)


def test_qsenn_assignment_shows_signed_weights():
    w = np.array([[0.7, -0.7, 0, 0], [0.7, 0, 0.7, 0], [0, 0, -0.7, 0.7]], dtype=np.float32)
    fig = assignment_figure(_config(w, bias=np.zeros(3)))
    image = next(ax for ax in fig.axes if ax.get_images()).get_images()[0]
    assert image.get_cmap().name == "RdBu_r" and image.get_clim() == pytest.approx((-0.7, 0.7))
    assert sorted(np.unique(np.asarray(image.get_array())).tolist()) == pytest.approx(
        [-0.7, 0.0, 0.7]
    )
    assert "Q-SENN" in fig._suptitle.get_text()


# -- writing files -------------------------------------------------------------------------------
def test_save_figure_is_atomic_and_names_bad_paths(tmp_path, qpm_dir):
    fig = assignment_figure(QPMConfig.load(qpm_dir / "config.json"))
    out = save_figure(fig, tmp_path / "new" / "dir" / "a.png", dpi=30)
    assert_png(out, fig, 30)
    with pytest.raises(InputError, match=r"a\.xyz: cannot tell the figure format from '\.xyz'"):
        save_figure(fig, tmp_path / "a.xyz")
    with pytest.raises(InputError, match=r"no extension"):
        save_figure(fig, tmp_path / "a")
    with pytest.raises(InputError, match=r"is a folder"):
        save_figure(fig, tmp_path / "new")

    before = out.read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("renderer failed")

    fig.savefig = broken
    with pytest.raises(RuntimeError):
        save_figure(fig, out)
    assert out.read_bytes() == before  # the old file is untouched ...
    assert sorted(p.name for p in out.parent.iterdir()) == ["a.png"]  # ... and no temporary is left


BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {blocked!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, Block())
    """
)


def _run_blocking(blocked: tuple[str, ...], code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER.format(blocked=blocked) + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_viz_imports_lightly_and_names_the_missing_extra(qpm_dir, tmp_path):
    result = _run_blocking(
        ("matplotlib", "scipy"),
        f"""
        import sys
        import qpm_zoo, qpm_zoo.viz
        from qpm_zoo import GlobalExplainer, MissingDependencyError, cli
        assert "matplotlib" not in sys.modules
        model = GlobalExplainer.from_pretrained({str(qpm_dir)!r})
        try:
            qpm_zoo.viz.assignment_figure(model)
        except MissingDependencyError as e:
            print(e)
        code = cli.main(["assignment", {str(qpm_dir)!r}, "--out", {str(tmp_path / "a.png")!r}])
        assert code == 2, code
        """,
    )
    assert result.returncode == 0, result.stderr
    assert "needs scipy, which is not installed: pip install 'qpm-zoo[viz]'" in result.stdout
    assert "needs matplotlib, which is not installed: pip install 'qpm-zoo[viz]'" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "a.png").exists()
