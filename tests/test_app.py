"""The explanation explorer's content and server (qpm_zoo.app) without a browser: the panels
carry exactly model.predict's numbers, bad uploads become messages, the ONNX server is
torch-free. tests/test_app_browser.py drives the same page in Chromium."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from hub.data import exported_checkpoint
from PIL import Image
from test_torch_free import BLOCK_TORCH, run_without_torch

from qpm_zoo.app import Explorer, load_model
from qpm_zoo.app.uploads import MAX_UPLOAD_PIXELS
from qpm_zoo.app.views import assignment_html
from qpm_zoo.cli import main as qpm_main


class Elements(HTMLParser):
    """The attributes of every element of an HTML fragment, by CSS class."""

    def __init__(self, html: str):
        super().__init__()
        self.by_class: dict[str, list[dict[str, str]]] = {}
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = {k: v or "" for k, v in attrs}
        for name in attributes.get("class", "").split():
            self.by_class.setdefault(name, []).append(attributes)

    def __getitem__(self, css_class: str) -> list[dict[str, str]]:
        return self.by_class.get(css_class, [])


def assert_shows(html: str, prediction) -> None:
    """The prediction panel holds `prediction` (a model.predict result) exactly."""
    page = Elements(html)
    (panel,) = page["qpm-prediction"]
    assert panel["data-label"] == prediction.label
    assert float(panel["data-probability"]) == pytest.approx(prediction.probability, rel=1e-6)
    assert float(panel["data-logit"]) == pytest.approx(prediction.logit, rel=1e-6)
    assert [r["data-label"] for r in page["qpm-topk-row"]] == [s.label for s in prediction.top_k]
    shown = page["qpm-feature"]
    expected = prediction.explanation.features
    assert [int(f["data-index"]) for f in shown] == [f.index for f in expected]
    for got, want in zip(shown, expected):
        assert got["data-name"] == want.name
        assert float(got["data-contribution"]) == pytest.approx(want.contribution, abs=1e-6)
        assert float(got["data-activation"]) == pytest.approx(want.activation, abs=1e-6)
        assert float(got["data-weight"]) == pytest.approx(want.weight, abs=1e-6)
    total = sum(float(f["data-contribution"]) for f in shown) + prediction.explanation.bias
    assert total == pytest.approx(prediction.logit, abs=1e-4), "the logit is the panels' sum"


@pytest.mark.parametrize("kind", ["qpm", "qsenn"])
def test_prediction_panel_shows_exactly_what_predict_returns(kind, qpm_dir, qsenn_dir, image_file):
    model = load_model(str(qpm_dir if kind == "qpm" else qsenn_dir))
    panels = Explorer(model).predict(str(image_file))
    prediction = model.predict(str(image_file))
    assert_shows(panels.prediction, prediction)
    assert panels.prediction.count("<img") == 1 + len(prediction.explanation.features)
    assert panels.class_name == prediction.label
    assert Elements(panels.class_view)["qpm-class"][0]["data-label"] == prediction.label
    (comparison,) = Elements(panels.comparison_view)["qpm-comparison"]
    assert (comparison["data-class-a"], comparison["data-class-b"]) == (
        prediction.top_k[0].label,
        prediction.top_k[1].label,
    )


def test_bad_uploads_are_messages_in_the_page(qpm_dir, tmp_path):
    explorer = Explorer(load_model(str(qpm_dir)))
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    huge = tmp_path / "huge.png"
    side = int(np.sqrt(MAX_UPLOAD_PIXELS)) + 100
    Image.new("L", (side, side)).save(huge)  # a few kB on disk, too many pixels to decode
    cut = tmp_path / "cut.png"
    Image.new("RGB", (80, 80), "red").save(cut)
    cut.write_bytes(cut.read_bytes()[:60])
    cases = {
        text: "notes.txt: not an image file",
        huge: f"huge.png: {side}×{side} pixels is more than the",
        cut: "cut.png:",
    }
    for path, message in cases.items():
        (error,) = Elements(html := explorer.predict(str(path)).prediction)["qpm-error"]
        assert error["role"] == "alert"
        assert message in html, html
        assert str(tmp_path) not in html, "the page names the file, not the server's folders"
    assert explorer.predict(None).prediction == ""


def test_class_comparison_and_assignment_views(qpm_dir):
    model = load_model(str(qpm_dir))
    explorer = Explorer(model)
    blue_jay = model.explain_class("Blue Jay")
    view = Elements(explorer.explain("Blue Jay"))
    assert [int(r["data-index"]) for r in view["qpm-class-feature"]] == [
        f.index for f in blue_jay.features
    ]
    comparison = model.compare("Cardinal", "Blue Jay")
    groups = {
        g["data-kind"]: int(g["data-count"])
        for g in Elements(explorer.compare("Cardinal", "Blue Jay"))["qpm-compare-group"]
    }
    assert groups == {
        "shared": len(comparison.shared),
        "only_a": len(comparison.only_a),
        "only_b": len(comparison.only_b),
    }
    assert "unknown class &#x27;Robin&#x27;" in explorer.explain("Robin")
    assert "qpm-error" in explorer.compare("Cardinal", "Robin")
    matrix = assignment_html(model)
    assert matrix.count('<td class="on"') == int((model.class_weights != 0).sum())


def test_app_command_is_listed_and_checks_its_port(qpm_dir, capsys):
    with pytest.raises(SystemExit):
        qpm_main(["--help"])
    assert "serve the explanation explorer" in capsys.readouterr().out
    assert qpm_main(["app", str(qpm_dir), "--port", "70000"]) == 2
    assert "--port must be between 1 and 65535, got 70000" in capsys.readouterr().err


def test_onnx_explorer_serves_without_torch(image_file, tmp_path_factory):
    pytest.importorskip("gradio")
    folder = exported_checkpoint(tmp_path_factory)  # shared with the Hub tests
    result = run_without_torch(
        f"""
        import sys, urllib.request
        from qpm_zoo.app import Explorer, load_model, serve

        model = load_model({str(folder)!r}, onnx=True)
        panels = Explorer(model).predict({str(image_file)!r})
        assert 'class="qpm-prediction"' in panels.prediction, panels.prediction[:300]
        page = serve(model, port=None, block=False)
        try:
            with urllib.request.urlopen(page.local_url, timeout=30) as response:
                assert response.status == 200
        finally:
            page.close()
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "timm"))
        assert not loaded, loaded
        print("OK")
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK")


def test_page_offers_the_examples_and_every_class(qpm_dir, image_file):
    pytest.importorskip("gradio")
    from qpm_zoo.app import build_page

    model = load_model(str(qpm_dir))
    page = build_page(model, examples=[image_file], title="tiny explorer")
    config = page.get_config_file()
    assert config["title"] == "tiny explorer"
    by_id = {c.get("props", {}).get("elem_id"): c["props"] for c in config["components"]}
    choices = [
        c[0] if isinstance(c, (list, tuple)) else c for c in by_id["qpm-class-choice"]["choices"]
    ]
    assert choices == list(model.label_names)
    assert image_file.name in json.dumps(config), "the example is offered"


def test_app_without_gradio_names_the_extra(qpm_dir):
    block_gradio = BLOCK_TORCH.replace('("torch", "torchvision", "timm")', '("gradio",)')
    result = subprocess.run(
        [sys.executable, "-c", block_gradio + "from qpm_zoo.cli import main; sys.exit(main())"]
        + ["app", str(qpm_dir), "--onnx"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "needs gradio, which is not installed: pip install 'qpm-zoo[app]'" in result.stderr
    assert "Traceback" not in result.stderr


def _labelled_folder(root: Path, labels, per_class: int) -> Path:
    rng = np.random.default_rng(5)
    for label in labels:
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (40 + 7 * i, 50, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


def test_conformal_prediction_sets_reach_their_coverage(qpm_dir, image_file, tmp_path):
    from qpm_zoo.app import calibrate_model
    from qpm_zoo.errors import UncalibratedCoverageError, UsageError

    model = load_model(str(qpm_dir))
    with pytest.raises(UncalibratedCoverageError, match="the model is not calibrated"):
        Explorer(model, coverage=0.8)
    folder = _labelled_folder(tmp_path / "calibration", model.label_names, 4)
    record = calibrate_model(model, folder, coverages=[0.8])
    assert record.images == 20 and model.config.calibration == record
    # on the calibration images themselves at least 80 % of the sets hold the true class
    paths = sorted(str(p) for p in folder.rglob("*.png"))
    preds = model.predict(paths, coverage=0.8)
    truths = [model.class_index(Path(p).parent.name) for p in paths]
    held = [model.label_names[t] in p.prediction_set.labels for p, t in zip(preds, truths)]
    assert sum(held) / len(held) >= 0.8

    panels = Explorer(model, coverage=0.8).predict(str(image_file))
    (shown,) = Elements(panels.prediction)["qpm-set"]
    item = model.predict_with_maps(str(image_file))[0]
    probabilities = np.exp(item.logits - item.logits.max())
    probabilities /= probabilities.sum()
    threshold = record.targets[0].threshold
    expected = [
        model.label_names[c]
        for c in np.argsort(-probabilities)
        if 1 - probabilities[c] <= threshold
    ]  # the conformal set, possibly empty
    assert json.loads(shown["data-classes"]) == expected
    assert "20 calibration images" in panels.prediction
    # by default the page shows the sets of the checkpoint's (here: in-memory) calibration
    assert Explorer(model).predict(str(image_file)) == panels
    assert "qpm-set" not in Explorer(model, coverage=None).predict(str(image_file)).prediction

    (folder / "Robin").mkdir()
    with pytest.raises(UsageError, match="Robin: the folder names no class of the model"):
        calibrate_model(model, folder)
    small = _labelled_folder(tmp_path / "small", model.label_names[:2], 1)
    with pytest.raises(
        UsageError, match="2 calibration images cannot calibrate a coverage of 0.99"
    ):
        calibrate_model(model, small, coverages=[0.99])
