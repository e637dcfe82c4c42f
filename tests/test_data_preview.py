"""Looking at the data: contact sheets, splits exported to disk (and read back), the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from training.cli import main as training_main
from training.data import DataConfig, DataConfigError, build_datasets
from training.data.preview import BOX_COLORS, TILE, class_folder_names, contact_sheet, export_splits

CONCEPTS = {
    "num_classes": 4,
    "concepts_per_class": 2,
    "pool_size": 6,
    "train_size": 12,
    "test_size": 8,
}


@pytest.fixture
def splits():
    return build_datasets(DataConfig.from_dict({"name": "concepts", "concepts": CONCEPTS}, "t"))


def test_contact_sheet_shows_images_boxes_and_legend(splits, tmp_path):
    gt = splits.ground_truth
    path = contact_sheet(
        splits.test, tmp_path / "sheet.png", count=6, columns=3, truths=gt.test, ground_truth=gt
    )
    sheet = np.asarray(Image.open(path).convert("RGB"))
    assert sheet.shape[1] == 3 * (TILE + 4) + 4
    # the first tile is image 0 zoomed 3x (64 px → 192), boxes drawn over it
    tile = sheet[4 : 4 + TILE, 4 : 4 + TILE]
    zoomed = np.asarray(splits.test.image(0).resize((TILE, TILE), Image.Resampling.NEAREST))
    assert (tile == zoomed).all(axis=-1).mean() > 0.7
    first = gt.test[0].instances[0]
    kind = "hidden" if not first.visible else "distractor" if first.distractor else "class"
    x0, y0 = int(first.box[0] * 3) + 4, int(first.box[1] * 3) + 4
    assert tuple(sheet[y0 + 14, x0]) == BOX_COLORS[kind], "box outline at the instance's left edge"
    legend = sheet[-60:]
    assert (legend > 200).any(), "legend text below the grid"
    assert not list(tmp_path.glob(".*.tmp")), "written atomically"

    plain = contact_sheet(splits.train, tmp_path / "plain.png", count=4, columns=4)
    with pytest.raises(DataConfigError, match="count and columns must be at least 1, got 0"):
        contact_sheet(splits.train, tmp_path / "none.png", count=0)
    assert Image.open(plain).size[1] == TILE + 18 + 8


def test_export_writes_an_imagefolder_tree_that_reads_back(splits, tmp_path):
    out = export_splits(splits, tmp_path / "export", progress=False)
    back = build_datasets(DataConfig.from_dict({"name": "imagefolder", "root": str(out)}, "t"))
    assert back.class_names == splits.class_names
    for original, copy in ((splits.train, back.train), (splits.test, back.test)):
        order = np.argsort(original.labels, kind="stable")  # ImageFolder lists class by class
        assert copy.labels.tolist() == original.labels[order].tolist()
        for j, i in enumerate(order):
            assert np.array_equal(np.asarray(copy.image(j)), np.asarray(original.image(i)))
    record = json.loads((out / "ground_truth.json").read_text())
    assert record["class_names"] == splits.class_names
    assert record["concept_names"] == list(splits.ground_truth.concept_names)
    entry = record["test"][5]
    assert entry["file"] == f"test/{splits.class_names[entry['label']]}/00005.png"
    assert entry["concepts"] == [i.to_dict() for i in splits.ground_truth.test[5].instances]

    with pytest.raises(DataConfigError, match="already exists"):
        export_splits(splits, out, progress=False)
    (out / "stale.txt").write_text("old")
    export_splits(splits, out, overwrite=True, progress=False)
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"], (
        "no temporary folders left behind"
    )


def test_class_folder_names_sort_in_label_order():
    assert class_folder_names(["class 0", "class 1"]) == ["class 0", "class 1"]
    assert class_folder_names(["T-shirt/top", "Trouser", "Bag"]) == [
        "0 T-shirt-top",
        "1 Trouser",
        "2 Bag",
    ]


def main(argv: list[str]) -> int:
    return training_main(["data", *argv])


def test_cli_summary_sheet_and_errors(tmp_path, capsys):
    config = tmp_path / "train.yaml"
    config.write_text(
        "data:\n  name: concepts\n  concepts:\n"
        + "".join(f"    {k}: {v}\n" for k, v in CONCEPTS.items())
    )
    sheet = tmp_path / "sheet.png"
    assert main(["--config", str(config), "--sheet", str(sheet), "--count", "4", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (
        summary["train_images"] == 12
        and summary["num_classes"] == 4
        and summary["sheet"] == str(sheet)
    )
    assert len(summary["class_concepts"]) == 4 and Image.open(sheet).format == "PNG"

    assert main(["--config", str(config)]) == 0
    table = capsys.readouterr().out
    assert "class 0" in table and "images" in table

    config.write_text("data:\n  name: imagefolder\n  root: missing\n")
    assert main(["--config", str(config)]) == 2
    assert f"error: {tmp_path / 'missing'}: does not exist" in capsys.readouterr().err
    config.write_text("data: [unclosed\n")
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"error: {config}: not valid YAML at line 2, column 1" in err and err.count("\n") == 1
