"""Prediction sets at the edges: the ONNX runtime gives the torch model's sets, `qpm predict
--coverage` and `qpm explain --coverage --out` print and draw them, and errors are one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_conformal import _all_empty_copy, _calibrated_copy
from test_figures import _panels, assert_png
from test_onnx_model import PHOTOS, qpm_onnx_dir  # noqa: F401 - the exported checkpoint fixture

from qpm_zoo import QPMOnnx
from qpm_zoo.cli import main
from qpm_zoo.model import QPM


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def calibrated_dir(qpm_dir, tmp_path_factory) -> Path:
    return _calibrated_copy(qpm_dir, tmp_path_factory.mktemp("sets") / "model")


def test_onnx_gives_the_same_sets_as_torch(qpm_onnx_dir, tmp_path):  # noqa: F811
    folder = tmp_path / "model"
    _calibrated_copy(qpm_onnx_dir, folder, coverages=(0.8, 0.95))  # on other images
    torch_model, onnx_model = QPM.from_pretrained(folder), QPMOnnx.from_pretrained(folder)
    assert onnx_model.config.calibration == torch_model.config.calibration
    sizes = set()
    for coverage in (0.8, 0.95):
        a = torch_model.predict(PHOTOS, coverage=coverage)
        b = onnx_model.predict(PHOTOS, coverage=coverage)
        for pa, pb in zip(a, b):
            sa, sb = pa.prediction_set, pb.prediction_set
            assert sa.labels == sb.labels and sa.empty == sb.empty and not sa.filled
            assert [f.index for f in sa.explanation.shared] == [
                f.index for f in sb.explanation.shared
            ]
            for ma, mb in zip(sa.explanation.members, sb.explanation.members):
                assert [f.index for f in ma.distinguishing] == [f.index for f in mb.distinguishing]
                assert ma.probability == pytest.approx(mb.probability, abs=1e-4)
            sizes.add(len(sa.labels))
    assert max(sizes) > 1  # the comparison saw sets of more than one class


def test_predict_prints_the_set_and_json_holds_it(capsys, calibrated_dir, image_file):
    code, out, err = run(capsys, "predict", calibrated_dir, image_file, "--coverage", "0.9")
    assert code == 0, err
    s = QPM.from_pretrained(calibrated_dir).predict(image_file, coverage=0.9).prediction_set
    line = next(x for x in out.splitlines() if "prediction set" in x)
    assert line.strip().startswith("90% prediction set (lac,")
    assert all(label in line for label in s.labels)
    if len(s.labels) > 1:
        assert "shared by all:" in out and f"sets {s.labels[0]} apart:" in out
    code, out, _ = run(capsys, "predict", calibrated_dir, image_file, "--coverage", "0.9", "--json")
    data = json.loads(out)
    assert data["prediction_set"]["labels"] == list(s.labels)
    assert data["prediction_set"]["coverage"] == 0.9
    _, plain, _ = run(capsys, "predict", calibrated_dir, image_file, "--json")
    assert "prediction_set" not in json.loads(plain)


def test_uncalibrated_coverages_are_one_line_errors(capsys, qpm_dir, calibrated_dir, image_file):
    code, out, err = run(capsys, "predict", qpm_dir, image_file, "--coverage", "0.9")
    assert code == 2 and out == ""
    assert "the model is not calibrated" in err and "python -m training calibrate" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "predict", calibrated_dir, image_file, "--coverage", "0.95")
    assert code == 2 and "calibrated for 0.8, 0.9 only" in err
    code, _, err = run(capsys, "explain", calibrated_dir, "Blue Jay", "--coverage", "0.9")
    assert code == 2 and "--coverage gives an image's prediction set" in err


def test_explain_draws_the_set_with_shared_and_distinguishing_features(
    capsys, calibrated_dir, image_file, tmp_path
):
    out_file = tmp_path / "set.png"
    code, out, err = run(
        capsys, "explain", calibrated_dir, image_file, "--coverage", "0.9", "--out", out_file
    )
    assert code == 0, err
    assert "prediction set" in out and f"figure: {out_file}" in out
    from qpm_zoo.viz import prediction_set_figure, save_figure

    model = QPM.from_pretrained(calibrated_dir)
    item = model.predict_with_maps(str(image_file), coverage=0.9)[0]
    s = item.prediction.prediction_set
    fig = prediction_set_figure(model, item)
    members = s.explanation.members
    expected = len(s.explanation.shared) + sum(len(m.distinguishing) for m in members)
    assert len(_panels(fig)) == min(expected, len(fig.axes))  # every feature drawn once
    titles = [ax.get_title().splitlines()[0] for ax in _panels(fig)]
    assert titles[: len(s.explanation.shared)] == [f.name for f in s.explanation.shared]
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    for m in members:
        assert any(t.startswith(m.label) for t in texts)
    assert "prediction set (lac)" in fig._suptitle.get_text()
    assert_png(save_figure(fig, tmp_path / "again.png", dpi=40), fig, 40)
    with pytest.raises(Exception, match="needs a prediction with its set"):
        prediction_set_figure(model, model.predict_with_maps(str(image_file))[0])


def test_sets_of_many_random_images_are_ordered_and_start_with_the_top_class(calibrated_dir):
    model = QPM.from_pretrained(calibrated_dir)
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(12)]
    for pred, filled in zip(
        model.predict(images, coverage=0.8), model.predict(images, coverage=0.8, never_empty=True)
    ):
        s = pred.prediction_set
        assert s.empty or s.labels[0] == pred.label
        assert filled.prediction_set.labels == (s.labels or (pred.label,))
        probabilities = [m.probability for m in s.explanation.members]
        assert probabilities == sorted(probabilities, reverse=True)


def test_the_model_card_reports_coverage_and_set_size_per_target(qpm_dir, tmp_path):
    from qpm_zoo.calibration import LabelledLogits, calibrate_logits, score_function
    from qpm_zoo.card import render_model_card
    from qpm_zoo.config import QPMConfig

    config = QPMConfig.load(qpm_dir / "config.json")
    assert "## Prediction sets" not in render_model_card(config)
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(120, config.num_classes))
    labels = rng.integers(0, config.num_classes, 120)
    record, evaluations = calibrate_logits(
        LabelledLogits(logits[:80], labels[:80], "val (generated)"),
        [0.9, 0.95],
        score_function("lac"),
        config.label_names,
        LabelledLogits(logits[80:], labels[80:], "test"),
    )
    card = render_model_card(config.replace(calibration=record))
    section = card.split("## Prediction sets")[1].split("## Global explanation")[0]
    assert "calibrated on 80 held-out images (val (generated))" in section
    assert "Measured on 40 test images (test)" in section
    for e in evaluations:
        row = next(x for x in section.splitlines() if x.startswith(f"| {e.coverage:.0%} "))
        assert f"{e.empirical_coverage:.1%}" in row and f"{e.mean_size:.2f}" in row
        assert f"{e.empty_share:.1%}" in row
        assert f"{config.label_names[e.worst_class]}: {e.worst_class_coverage:.1%}" in row


@pytest.fixture(scope="module")
def empty_set_dir(qpm_dir, tmp_path_factory) -> Path:
    """A checkpoint whose 90 % threshold is 0: every LAC set is empty."""
    return _all_empty_copy(qpm_dir, tmp_path_factory.mktemp("empty") / "model")


def test_an_empty_set_is_shown_as_one_in_text_json_figure_and_page(
    capsys, empty_set_dir, image_file, tmp_path
):
    code, out, err = run(capsys, "predict", empty_set_dir, image_file, "--coverage", "0.9")
    assert code == 0, err
    assert "empty set at 90% (lac)" in out and "prediction set" not in out
    code, out, err = run(
        capsys, "predict", empty_set_dir, image_file, "--coverage", "0.9", "--json"
    )
    s = json.loads(out)["prediction_set"]
    assert s["empty"] is True and s["labels"] == [] and s["explanation"]["members"] == []
    code, out, err = run(
        capsys, "predict", empty_set_dir, image_file, "--coverage", "0.9", "--never-empty"
    )
    assert code == 0, err
    assert "90% prediction set (lac, 1 class)" in out and "--never-empty put the top" in out
    code, out, err = run(capsys, "predict", empty_set_dir, image_file, "--never-empty")
    assert code != 0 and "never_empty applies to prediction sets" in err

    out_file = tmp_path / "empty.png"
    code, out, err = run(
        capsys, "explain", empty_set_dir, image_file, "--coverage", "0.9", "--out", out_file
    )
    assert code == 0, err
    from qpm_zoo.app.views import prediction_set_html
    from qpm_zoo.viz import prediction_set_figure, save_figure

    model = QPM.from_pretrained(empty_set_dir)
    item = model.predict_with_maps(str(image_file), coverage=0.9)[0]
    fig = prediction_set_figure(model, item)
    assert "is empty" in fig._suptitle.get_text()
    assert _panels(fig) == []  # no member, no feature drawn
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any(t.startswith("empty set at 90%") and item.prediction.label in t for t in texts)
    assert_png(save_figure(fig, tmp_path / "again.png", dpi=40), fig, 40)
    html = prediction_set_html(item.prediction.prediction_set)
    assert "<i>empty</i>" in html and 'data-classes="[]"' in html
