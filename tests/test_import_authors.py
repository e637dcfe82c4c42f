"""`python -m training import-authors`: the authors' released state_dicts as zoo checkpoints.

The files are built here in the authors' layout (ThomasNorr/QPM architectures/resnet.py and
SLDDLevel.py: torchvision ResNet key names, `linear.selection/mean/std`, `linear.layer.weight`
and, for Q-SENN, `linear.layer.bias`), and every converted output is checked against
`authors_forward`, a plain-torch forward of that layout written here (not our model).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from qpm_zoo.card import render_model_card
from qpm_zoo.config import PreprocessConfig, QPMConfig
from qpm_zoo.model import QPM
from qpm_zoo.preprocess import ImagePreprocessor, LoadedImage
from training.authors import (
    AuthorsCheckpointError,
    eval_preprocessing,
    read_authors_checkpoint,
    read_label_names,
)
from training.cli import main as training_main

#: arch → (bottleneck?, blocks per layer), as in the authors' resnet18/34/50.
LAYOUTS = {
    "resnet18": (False, (2, 2, 2, 2)),
    "resnet34": (False, (3, 4, 6, 3)),
    "resnet50": (True, (3, 4, 6, 3)),
}
PLANES = (64, 128, 256, 512)
TOLERANCE = 1e-5  #: relative (to the largest reference value), float32 on the CPU
STD_FLOOR = 1e-6  #: the authors' clamp of the std (SLDDLevel.forward)


# -- the authors' layout, written from their code ------------------------------------------------
def _conv(gen: torch.Generator, out_c: int, in_c: int, size: int) -> torch.Tensor:
    fan_in = in_c * size * size
    return torch.randn(out_c, in_c, size, size, generator=gen) * (2.0 / fan_in) ** 0.5


def _bn(sd: dict, name: str, c: int, gen: torch.Generator, scale: float = 1.0) -> None:
    sd[f"{name}.weight"] = (0.5 + 0.5 * torch.rand(c, generator=gen)) * scale
    sd[f"{name}.bias"] = 0.1 * torch.randn(c, generator=gen)
    sd[f"{name}.running_mean"] = 0.1 * torch.randn(c, generator=gen)
    sd[f"{name}.running_var"] = 0.5 + torch.rand(c, generator=gen)
    sd[f"{name}.num_batches_tracked"] = torch.tensor(1000)


def authors_backbone(arch: str, gen: torch.Generator) -> dict[str, torch.Tensor]:
    bottleneck, blocks = LAYOUTS[arch]
    expansion = 4 if bottleneck else 1
    sd = {"conv1.weight": _conv(gen, 64, 3, 7)}
    _bn(sd, "bn1", 64, gen)
    inplanes = 64
    for layer, (planes, count) in enumerate(zip(PLANES, blocks), start=1):
        for i in range(count):
            p = f"layer{layer}.{i}"
            if bottleneck:
                sd[f"{p}.conv1.weight"] = _conv(gen, planes, inplanes, 1)
                _bn(sd, f"{p}.bn1", planes, gen)
                sd[f"{p}.conv2.weight"] = _conv(gen, planes, planes, 3)
                _bn(sd, f"{p}.bn2", planes, gen)
                sd[f"{p}.conv3.weight"] = _conv(gen, planes * 4, planes, 1)
                _bn(sd, f"{p}.bn3", planes * 4, gen, scale=0.3)
            else:
                sd[f"{p}.conv1.weight"] = _conv(gen, planes, inplanes, 3)
                _bn(sd, f"{p}.bn1", planes, gen)
                sd[f"{p}.conv2.weight"] = _conv(gen, planes, planes, 3)
                _bn(sd, f"{p}.bn2", planes, gen, scale=0.3)
            if i == 0 and (layer > 1 or inplanes != planes * expansion):
                sd[f"{p}.downsample.0.weight"] = _conv(gen, planes * expansion, inplanes, 1)
                _bn(sd, f"{p}.downsample.1", planes * expansion, gen)
            inplanes = planes * expansion
    return sd


def authors_state_dict(
    arch: str = "resnet18",
    model_type: str = "qpm",
    num_classes: int = 6,
    n: int = 8,
    k: int = 3,
    seed: int = 0,
    dead_feature: bool = False,
) -> dict[str, torch.Tensor]:
    """A state_dict as `torch.save(model.state_dict())` of the authors' fine-tuned model;
    `dead_feature` gives feature 0 a std below the floor (it then dominates every output)."""
    gen = torch.Generator().manual_seed(seed)
    sd = authors_backbone(arch, gen)
    channels = 2048 if LAYOUTS[arch][0] else 512
    sd["linear.selection"] = torch.randperm(channels, generator=gen)[:n]
    sd["linear.mean"] = 0.5 * torch.rand(n, generator=gen)
    std = 0.1 + torch.rand(n, generator=gen)
    if dead_feature:
        std[0] = 1e-9
    sd["linear.std"] = std
    weight = torch.zeros(num_classes, n)
    for c in range(num_classes):
        weight[c, torch.randperm(n, generator=gen)[:k]] = 1.0
    if model_type == "qsenn":
        signs = torch.where(torch.rand(num_classes, n, generator=gen) < 0.3, -1.0, 1.0)
        weight = weight * signs * 0.8
        sd["linear.layer.bias"] = torch.randn(num_classes, generator=gen)
    sd["linear.layer.weight"] = weight
    return sd


def authors_forward(
    sd: dict[str, torch.Tensor], x: torch.Tensor, reduced_strides: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' model in plain torch: (logits, normalised selected features)."""

    def bn(t: torch.Tensor, name: str) -> torch.Tensor:
        return F.batch_norm(
            t,
            sd[f"{name}.running_mean"],
            sd[f"{name}.running_var"],
            sd[f"{name}.weight"],
            sd[f"{name}.bias"],
            training=False,
            eps=1e-5,
        )

    def conv(t: torch.Tensor, name: str, stride: int = 1) -> torch.Tensor:
        w = sd[f"{name}.weight"]
        return F.conv2d(t, w, stride=stride, padding=w.shape[-1] // 2)

    bottleneck = "layer1.0.conv3.weight" in sd
    t = F.relu(bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), "bn1"))
    t = F.max_pool2d(t, kernel_size=3, stride=2, padding=1)
    late = 1 if reduced_strides else 2  # changed_strides: layer3 and layer4 keep stride 1
    for layer, layer_stride in zip(range(1, 5), (1, 2, late, late)):
        i = 0
        while f"layer{layer}.{i}.conv1.weight" in sd:
            p, stride = f"layer{layer}.{i}", layer_stride if i == 0 else 1
            if bottleneck:
                out = F.relu(bn(conv(t, f"{p}.conv1"), f"{p}.bn1"))
                out = F.relu(bn(conv(out, f"{p}.conv2", stride), f"{p}.bn2"))
                out = bn(conv(out, f"{p}.conv3"), f"{p}.bn3")
            else:
                out = F.relu(bn(conv(t, f"{p}.conv1", stride), f"{p}.bn1"))
                out = bn(conv(out, f"{p}.conv2"), f"{p}.bn2")
            shortcut = t
            if f"{p}.downsample.0.weight" in sd:
                shortcut = bn(conv(t, f"{p}.downsample.0", stride), f"{p}.downsample.1")
            t = F.relu(out + shortcut)
            i += 1
    pooled = t[:, sd["linear.selection"]].mean(dim=(2, 3))
    features = (pooled - sd["linear.mean"]) / torch.clamp(sd["linear.std"], min=STD_FLOOR)
    logits = features @ sd["linear.layer.weight"].T
    if "linear.layer.bias" in sd:
        logits = logits + sd["linear.layer.bias"]
    return logits, features


def relative_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max().clamp(min=1e-30))


# -- helpers -------------------------------------------------------------------------------------
LABELS = ["Black footed Albatross", "Laysan Albatross", "Sooty Albatross", "Groove billed Ani",
          "Crested Auklet", "Least Auklet"]  # fmt: skip


def write_classes_txt(path: Path, names: list[str]) -> Path:
    """CUB's classes.txt: '1 001.Black_footed_Albatross'."""
    lines = [f"{i} {i:03d}.{name.replace(' ', '_')}" for i, name in enumerate(names, start=1)]
    path.write_text("\n".join(lines) + "\n")
    return path


def import_authors(tmp_path: Path, sd: dict, *extra: str, arch: str = "resnet18",
                   size: int = 64, labels: list[str] | None = None) -> tuple[int, Path]:  # fmt: skip
    source = tmp_path / "qpm_50_5_FinetunedModel.pth"
    torch.save(sd, source)
    labels_file = write_classes_txt(tmp_path / "classes.txt", labels or LABELS)
    out = tmp_path / "converted"
    argv = ["import-authors", source, "--arch", arch, "--labels", labels_file,
            "--image-size", size, "--out", out, *extra]  # fmt: skip
    return training_main([str(a) for a in argv]), out


def assert_same_outputs(model: QPM, sd: dict, reduced: bool, size: int = 64) -> tuple[float, float]:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ours = model.forward_all(x)
        logits, features = authors_forward(sd, x, reduced)
    d_logits = relative_difference(ours.logits, logits)
    d_features = relative_difference(ours.features, features)
    assert d_logits < TOLERANCE and d_features < TOLERANCE, (d_logits, d_features)
    return d_logits, d_features


# -- outputs equal the authors' ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arch", "model_type", "reduced"),
    [
        ("resnet18", "qpm", False),
        ("resnet18", "qpm", True),
        ("resnet18", "qsenn", False),
        ("resnet18", "qsenn", True),
        ("resnet34", "qpm", True),
        ("resnet50", "qpm", True),
        ("resnet50", "qsenn", False),
    ],
)
def test_converted_checkpoint_gives_the_authors_outputs(tmp_path, arch, model_type, reduced):
    sd = authors_state_dict(arch, model_type, seed=len(arch) + 10 * reduced)
    code, out = import_authors(tmp_path, sd, *(["--reduced-strides"] if reduced else []), arch=arch)
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "README.md"}
    model = QPM.from_pretrained(out)
    assert model.config.model_type == model_type  # found from the file: a bias means Q-SENN
    assert model.config.backbone.reduced_strides is reduced
    assert model.config.label_names == tuple(LABELS)
    assert model.head.selection.tolist() == sd["linear.selection"].tolist()
    assert_same_outputs(model, sd, reduced)


def test_reduced_strides_matter(tmp_path):
    """The flag is not cosmetic: the other stride setting gives other outputs."""
    sd = authors_state_dict("resnet18", "qpm")
    code, out = import_authors(tmp_path, sd, "--reduced-strides")
    assert code == 0
    model = QPM.from_pretrained(out)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours = model(x)
        theirs, _ = authors_forward(sd, x, reduced_strides=False)
    assert relative_difference(ours, theirs) > 1e-2


def test_std_floor_is_the_authors(tmp_path):
    sd = authors_state_dict("resnet18", "qpm", dead_feature=True)
    assert import_authors(tmp_path, sd)[0] == 0
    model = QPM.from_pretrained(tmp_path / "converted")
    assert float(model.head.std[0]) == pytest.approx(1e-9)  # stored as given, floored in forward
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got = model.forward_all(x).features[0, 0]
        _, features = authors_forward(sd, x, reduced_strides=False)
    assert float(got) == pytest.approx(float(features[0, 0]), rel=1e-5)


# -- the file is read safely and strictly --------------------------------------------------------
def error_of(tmp_path: Path, capsys, sd_or_bytes, *extra: str, arch: str = "resnet18") -> str:
    if isinstance(sd_or_bytes, bytes):
        source = tmp_path / "file.pth"
        source.write_bytes(sd_or_bytes)
        labels = write_classes_txt(tmp_path / "classes.txt", LABELS)
        argv = ["import-authors", source, "--arch", arch, "--labels", labels, "--image-size", 64,
                "--out", tmp_path / "out", *extra]  # fmt: skip
        code = training_main([str(a) for a in argv])
    else:
        code, _ = import_authors(tmp_path, sd_or_bytes, *extra, arch=arch)
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "converted" / "config.json").exists()
    return err


def test_random_bytes_are_refused(tmp_path, capsys):
    err = error_of(tmp_path, capsys, np.random.default_rng(0).bytes(4096))
    assert "not a PyTorch state_dict" in err


def test_zip_that_is_not_a_state_dict_is_refused(tmp_path, capsys):
    path = tmp_path / "archive.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    err = error_of(tmp_path, capsys, path.read_bytes())
    assert "not a PyTorch state_dict" in err


class Payload:
    """Pickled code: torch.load(weights_only=True) must refuse to run it."""

    def __reduce__(self):
        return (exec, ("raise SystemExit('pickle code ran')",))


def test_pickled_code_is_not_run(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "x": Payload()}, path)
    err = error_of(tmp_path, capsys, path.read_bytes())
    assert "not a PyTorch state_dict that can be read safely" in err


def test_a_tensor_is_not_a_state_dict(tmp_path, capsys):
    path = tmp_path / "t.pth"
    torch.save({"model": {"conv1.weight": torch.zeros(1)}}, path)
    err = error_of(tmp_path, capsys, path.read_bytes())
    assert "key 'model' holds a dict, not a tensor" in err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda sd: sd.update({"fc.weight": torch.zeros(6, 512)}), "key 'fc.weight' is not part"),
        (lambda sd: sd.pop("layer2.1.bn1.running_var"), "key 'layer2.1.bn1.running_var' is missing"),
        (lambda sd: sd.update({"layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1)}),
         "key 'layer1.0.conv1.weight' has shape (64, 64, 1, 1)"),
        (lambda sd: sd.pop("linear.mean"), "key 'linear.mean' is missing"),
        (lambda sd: sd.update({"linear.std": torch.ones(7)}), "key 'linear.std' has shape (7,)"),
        (lambda sd: sd.update({"linear.layer.weight": torch.ones(6, 7)}),
         "key 'linear.layer.weight' has shape (6, 7)"),
        (lambda sd: sd["linear.selection"].__setitem__(1, sd["linear.selection"][0]),
         "key 'linear.selection' selects a channel twice"),
        (lambda sd: sd["linear.selection"].__setitem__(0, 512), "key 'linear.selection' holds channels"),
        (lambda sd: sd["linear.layer.weight"].__setitem__((2, slice(None)), 0.0),
         "key 'linear.layer.weight' row 2 has 0 features; every QPM class needs k=3"),
        (lambda sd: sd["linear.layer.weight"].__setitem__((0, 0), 0.5),
         "key 'linear.layer.weight' of a QPM must be binary"),
        (lambda sd: sd["linear.mean"].__setitem__(0, float("nan")), "key 'linear.mean' holds NaN"),
    ],
)  # fmt: skip
def test_every_key_is_used_or_refused_by_name(tmp_path, capsys, change, message):
    sd = authors_state_dict("resnet18", "qpm")
    change(sd)
    assert message in error_of(tmp_path, capsys, sd)


def test_rows_with_another_k_than_asked_are_refused(tmp_path, capsys):
    err = error_of(tmp_path, capsys, authors_state_dict(), "--per-class", "5")
    assert "key 'linear.layer.weight' row 0 has 3 features; every QPM class needs k=5" in err


@pytest.mark.parametrize(
    ("file_arch", "arch"), [("resnet18", "resnet34"), ("resnet18", "resnet50")]
)
def test_architecture_must_match_the_tensors(tmp_path, capsys, file_arch, arch):
    err = error_of(tmp_path, capsys, authors_state_dict(file_arch), arch=arch)
    assert f"the backbone tensors are a {file_arch}" in err and f"not a {arch}" in err


def test_model_type_given_must_match_the_file(tmp_path, capsys):
    err = error_of(tmp_path, capsys, authors_state_dict(model_type="qsenn"), "--model-type", "qpm")
    assert "key 'linear.layer.bias' is a class bias, which only Q-SENN has" in err
    err = error_of(tmp_path, capsys, authors_state_dict(model_type="qpm"), "--model-type", "qsenn")
    assert "key 'linear.layer.bias' is missing" in err


def test_label_count_must_match_the_classes(tmp_path, capsys):
    sd = authors_state_dict(num_classes=5)
    assert "has 5 classes, the label file 6 names" in error_of(tmp_path, capsys, sd)


def test_existing_checkpoint_is_not_overwritten_silently(tmp_path, capsys):
    sd = authors_state_dict()
    assert import_authors(tmp_path, sd)[0] == 0
    assert import_authors(tmp_path, sd)[0] == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert import_authors(tmp_path, sd, "--overwrite")[0] == 0


def test_reading_a_file_directly_names_its_parts(tmp_path):
    sd = authors_state_dict("resnet18", "qsenn")
    torch.save(sd, tmp_path / "q.pth")
    checkpoint = read_authors_checkpoint(tmp_path / "q.pth", "resnet18")
    assert checkpoint.head.model_type == "qsenn" and checkpoint.num_features == 512
    assert len(checkpoint.backbone) == len(sd) - 5 and len(checkpoint.sha256) == 64
    with pytest.raises(AuthorsCheckpointError, match="no such file"):
        read_authors_checkpoint(tmp_path / "missing.pth", "resnet18")


# -- labels ----------------------------------------------------------------------------------------
def test_cub_classes_txt_and_plain_label_files(tmp_path):
    cub = write_classes_txt(tmp_path / "classes.txt", LABELS)
    assert read_label_names(cub) == LABELS
    plain = tmp_path / "labels.txt"
    plain.write_text("001.Black_footed_Albatross\n\n2 Series Coupe\nAM General Hummer SUV 2000\n")
    assert read_label_names(plain) == [
        "Black footed Albatross",
        "2 Series Coupe",  # not numbered 1, 2, ...: the number is part of the name
        "AM General Hummer SUV 2000",
    ]
    plain.write_text("a\nb\na\n")
    with pytest.raises(AuthorsCheckpointError, match="'a' appears twice"):
        read_label_names(plain)


# -- preprocessing: the authors' test transforms -------------------------------------------------
def authors_test_transform(dataset: str, size: int, crop: bool):
    """get_data.py's test transforms, with the statistics of configs/dataset_params.py."""
    from torchvision import transforms

    stats = {
        "CUB2011": ([0.4853, 0.4964, 0.4295], [0.2300, 0.2258, 0.2625]),
        "TravelingBirds": ([0.4584, 0.4369, 0.3957], [0.2610, 0.2569, 0.2722]),
        "StanfordCars": ([0.4593, 0.4466, 0.4453], [0.2920, 0.2910, 0.2988]),
    }
    if dataset == "ImageNet":
        return transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224),
                                   transforms.ToTensor()])  # fmt: skip
    mean, std = stats[dataset]
    resize = [transforms.Resize((size, size))] if crop else [transforms.Resize(size),
                                                             transforms.CenterCrop(size)]  # fmt: skip
    return transforms.Compose([*resize, transforms.ToTensor(), transforms.Normalize(mean, std)])


@pytest.mark.parametrize(
    ("dataset", "size", "crop"),
    [
        ("CUB2011", 224, True),
        ("CUB2011", 448, False),
        ("TravelingBirds", 224, True),
        ("StanfordCars", 224, False),
        ("ImageNet", 224, False),
    ],
)
def test_preprocessing_reproduces_the_authors_test_transform(dataset, size, crop):
    from PIL import Image

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (301, 417, 3), dtype=np.uint8))
    ours = ImagePreprocessor(eval_preprocessing(dataset, size, crop)).to_model_input(
        LoadedImage("x", image)
    )
    theirs = authors_test_transform(dataset, size, crop)(image).numpy()
    side = 224 if dataset == "ImageNet" else size
    assert ours.shape == theirs.shape == (3, side, side)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_preprocessing_refuses_what_the_authors_code_refuses():
    with pytest.raises(AuthorsCheckpointError, match="224 px only"):
        eval_preprocessing("ImageNet", 448, False)
    with pytest.raises(AuthorsCheckpointError, match="not to StanfordCars"):
        eval_preprocessing("StanfordCars", 224, True)


def test_dataset_option_sets_the_preprocessing(tmp_path):
    code, out = import_authors(tmp_path, authors_state_dict(), "--dataset", "StanfordCars", size=96)
    assert code == 0
    prep = QPMConfig.load(out / "config.json").preprocessing
    assert prep == PreprocessConfig(
        input_size=(3, 96, 96),
        interpolation="bilinear",
        crop_mode="center",
        crop_pct=1.0,
        mean=(0.4593, 0.4466, 0.4453),
        std=(0.2920, 0.2910, 0.2988),
    )
    code, out = import_authors(tmp_path, authors_state_dict(), "--overwrite")  # CUB, crops
    assert QPMConfig.load(out / "config.json").preprocessing.crop_mode == "squash"


# -- provenance on the card, and publishing ------------------------------------------------------
def test_card_says_where_the_weights_come_from(tmp_path):
    sd = authors_state_dict()
    code, out = import_authors(tmp_path, sd, "--reported-accuracy", "85.5")
    assert code == 0
    config = QPMConfig.load(out / "config.json")
    provenance = config.provenance
    assert provenance.file == "qpm_50_5_FinetunedModel.pth"
    assert (
        provenance.sha256 == hashlib.sha256((tmp_path / provenance.file).read_bytes()).hexdigest()
    )
    assert provenance.reported_metrics == {"accuracy": 0.855}
    assert "ICLR 2025" in provenance.paper
    assert json.loads((out / "config.json").read_text())["provenance"]["file"] == provenance.file
    card = (out / "README.md").read_text()
    assert card == render_model_card(config)
    section = card.split("## Provenance", 1)[1].split("\n## ", 1)[0]
    assert provenance.file in section and provenance.sha256 in section
    assert "ICLR 2025" in section
    assert "Reported by the authors for this file, not measured here" in section
    assert "| Top-1 accuracy | 0.855 |" in section
    assert "no licence file" in section
    assert "| License | not stated by the weights' authors (see Provenance) |" in card


def test_card_without_provenance_has_no_such_section(qpm_dir):
    assert "## Provenance" not in render_model_card(QPMConfig.load(qpm_dir / "config.json"))


def test_publish_needs_an_explicit_license(tmp_path, capsys):
    code, out = import_authors(tmp_path, authors_state_dict())
    assert code == 0
    capsys.readouterr()
    argv = ["publish", str(out), "org/qpm-authors", "--dry-run"]
    assert training_main(argv) == 2
    err = capsys.readouterr().err
    assert "no licence file" in err and "--license" in err
    code, out = import_authors(tmp_path, authors_state_dict(), "--overwrite", "--license", "other")
    assert code == 0
    assert training_main(argv) == 0
    assert "license: other" in (out / "README.md").read_text()


# -- downstream: evaluate on the dataset ---------------------------------------------------------
def test_evaluate_runs_on_a_converted_checkpoint(tmp_path, capsys):
    from test_data_cub import make_cub

    base = make_cub(tmp_path / "data")
    source = tmp_path / "qpm.pth"
    torch.save(authors_state_dict(num_classes=3, n=4, k=2), source)
    out = tmp_path / "converted"
    argv = ["import-authors", source, "--arch", "resnet18", "--labels", base / "classes.txt",
            "--image-size", 32, "--out", out, "--reduced-strides"]  # fmt: skip
    assert training_main([str(a) for a in argv]) == 0
    assert QPMConfig.load(out / "config.json").label_names[0] == "Black footed Albatross"
    recipe = tmp_path / "cub.yaml"
    recipe.write_text(
        f"extends: {Path(__file__).parents[1] / 'configs' / 'cub-resnet50.yaml'}\n"
        f"data: {{root: {base}}}\n"
        "runtime: {device: cpu, num_workers: 0, eval_batch_size: 4}\n"
    )
    capsys.readouterr()
    argv = ["evaluate", str(out), "--data", str(recipe), "--no-dense", "--json"]
    assert training_main(argv) == 0, capsys.readouterr().err
    metrics = json.loads(capsys.readouterr().out)
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["per_class"] == 2
    assert QPMConfig.load(out / "config.json").metrics["accuracy"] == metrics["accuracy"]


# -- slow: a release-sized file through every downstream command ---------------------------------
@pytest.mark.slow
def test_full_size_resnet50_release_works_everywhere(tmp_path, capsys, image_file):
    """ResNet-50 with reduced strides at 224 px, 200 classes, n = 50, k = 5 (the released QPM's
    shape): converted, equal to the authors' forward, exported to ONNX with its parity check,
    and used by qpm predict/explain/compare/assignment and publish --dry-run."""
    import export.cli
    import qpm_zoo.cli

    labels = [f"Species {i:03d}" for i in range(200)]
    sd = authors_state_dict("resnet50", "qpm", num_classes=200, n=50, k=5, seed=11)
    argv = ["--reduced-strides", "--reported-accuracy", "85.5", "--license", "other"]
    code, out = import_authors(tmp_path, sd, *argv, arch="resnet50", size=224, labels=labels)
    assert code == 0
    model = QPM.from_pretrained(out)
    assert (model.config.num_classes, model.config.n_features, model.config.k) == (200, 50, 5)
    assert_same_outputs(model, sd, reduced=True, size=224)
    del model

    capsys.readouterr()
    assert export.cli.main(["onnx", str(out), "--json"]) == 0
    export_result = json.loads(capsys.readouterr().out)
    assert export_result["passed"] and export_result["written"]
    assert QPMConfig.load(out / "config.json").provenance.file == "qpm_50_5_FinetunedModel.pth"

    for backend in ([], ["--onnx"]):
        assert qpm_zoo.cli.main(["predict", str(out), str(image_file), "--json", *backend]) == 0
        prediction = json.loads(capsys.readouterr().out)
        assert prediction["label"] in labels
    assert qpm_zoo.cli.main(["explain", str(out), "Species 000"]) == 0
    assert qpm_zoo.cli.main(["compare", str(out), "Species 000", "Species 001"]) == 0
    assert qpm_zoo.cli.main(["assignment", str(out), "--out", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.png").stat().st_size > 0
    assert training_main(["publish", str(out), "org/qpm-resnet50-cub", "--dry-run"]) == 0
    card = (out / "README.md").read_text()
    assert "## Provenance" in card and "model.onnx" in card
