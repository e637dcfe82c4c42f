"""The adapter and the frozen backbone (docs/method.md §8.2-§8.3): config.json's description,
strict loading of its tensors, checkpoints without one, and training on cached trunk maps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from recipes import TINY
from safetensors.torch import load_file, save_file

from qpm_zoo import CheckpointError, ConfigError, QPMConfig
from qpm_zoo.adapter import Adapter
from qpm_zoo.backbone import Backbone
from qpm_zoo.config import AdapterConfig
from qpm_zoo.model import QPM
from training.cli import main as training_main
from training.config import FitConfig
from training.errors import FitConfigError
from training.nn.frozen import MapLoader, TrunkMaps
from training.pipeline import FitRun

MLP = AdapterConfig(kind="mlp", features=10, hidden=16, layers=3)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"kind": "conv1x1", "features": 8, "layers": 2}, "layers: is 2; a conv1x1 adapter has 1"),
        ({"kind": "conv1x1", "features": 8, "hidden": 4}, "hidden: must not be set"),
        ({"kind": "mlp", "features": 8, "layers": 2}, "hidden: is required for an mlp adapter"),
        ({"kind": "mlp", "features": 8, "hidden": 4, "layers": 1}, "layers: is 1; an mlp"),
        ({"kind": "attention", "features": 8}, "kind: must be 'conv1x1' or 'mlp'"),
        ({"kind": "mlp", "features": 0, "hidden": 4, "layers": 2}, "features: must be at least 1"),
    ],
)
def test_adapter_descriptions_that_do_not_make_sense_are_refused(fields, problem):
    with pytest.raises(ConfigError, match=problem):
        AdapterConfig(**fields)


def test_adapter_shape_follows_its_description():
    adapter = Adapter(MLP, in_channels=7)
    convs = [m for m in adapter if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (7, 16, (1, 1)),
        (16, 16, (1, 1)),
        (16, 10, (1, 1)),
    ]
    assert sum(p.numel() for p in adapter.parameters()) == MLP.parameter_count(7)
    out = adapter(torch.randn(2, 7, 3, 5))
    assert out.shape == (2, 10, 3, 5) and (out >= 0).all()


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory) -> Path:
    """A QPM on test_resnet with an mlp adapter: the head selects 6 of the adapter's 10."""
    torch.manual_seed(0)
    bb = Backbone.create("test_resnet", adapter=MLP).eval()
    rng = np.random.default_rng(0)
    weight = np.zeros((3, 6), dtype=np.float32)
    for c in range(3):
        weight[c, [2 * c, 2 * c + 1]] = 1
    model = QPM.from_assignment(
        bb,
        selected_features=[9, 0, 3, 5, 7, 8],
        weight=weight,
        mean=rng.random(6),
        std=rng.random(6) + 0.5,
        label_names=["a", "b", "c"],
        k=2,
    )
    folder = tmp_path_factory.mktemp("adapter") / "model"
    model.save_pretrained(folder)
    return folder


def test_adapter_checkpoint_describes_and_restores_it(adapter_dir):
    config = json.loads((adapter_dir / "config.json").read_text())
    assert config["backbone"]["adapter"] == {
        "kind": "mlp",
        "features": 10,
        "hidden": 16,
        "layers": 3,
    }
    tensors = load_file(str(adapter_dir / "model.safetensors"))
    assert "backbone.adapter.0.weight" in tensors and "backbone.adapter.7.running_var" in tensors
    model = QPM.from_pretrained(adapter_dir)
    assert model.backbone.num_features == 10 and model.config.backbone.num_features == 96
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert model.forward_all(x).feature_maps.shape[1] == 6


def test_selected_features_are_checked_against_the_adapter_outputs(adapter_dir):
    data = json.loads((adapter_dir / "config.json").read_text())
    data["selected_features"][0] = 10  # the adapter has 10 features, the trunk 64
    with pytest.raises(ConfigError, match=r"selected_features: holds \[10\], outside the .* 10"):
        QPMConfig.from_dict(data)


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (
            lambda t: t.pop("backbone.adapter.3.weight"),
            r"1 missing tensor\(s\): backbone\.adapter\.3",
        ),
        (
            lambda t: t.update({"backbone.adapter.9.weight": torch.ones(16)}),
            r"1 unexpected tensor\(s\): backbone\.adapter\.9\.weight",
        ),
        (
            lambda t: t.update({"backbone.adapter.0.weight": torch.ones(16, 63, 1, 1)}),
            r"'backbone\.adapter\.0\.weight' has shape \(16, 63, 1, 1\)",
        ),
    ],
)
def test_adapter_tensors_are_loaded_strictly(adapter_dir, tmp_path, edit, problem):
    folder = Path(shutil.copytree(adapter_dir, tmp_path / "model"))
    tensors = load_file(str(folder / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=problem):
        QPM.from_pretrained(folder)


def test_adapter_tensors_in_a_checkpoint_without_adapter_are_refused(qpm_dir, tmp_path):
    folder = Path(shutil.copytree(qpm_dir, tmp_path / "model"))
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["backbone.adapter.0.weight"] = torch.zeros(4, 64, 1, 1)
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"unexpected tensor\(s\): backbone\.adapter"):
        QPM.from_pretrained(folder)


def test_checkpoints_without_adapter_keep_the_format_they_had(qpm_dir):
    """A model without adapter writes config.json's backbone exactly as before the adapter
    existed (no new key), and such a file loads with the backbone's own maps."""
    config = json.loads((qpm_dir / "config.json").read_text())
    assert set(config["backbone"]) == {"name", "num_features", "kwargs", "reduced_strides"}
    assert config["format_version"] == 1
    assert not [k for k in load_file(str(qpm_dir / "model.safetensors")) if "adapter" in k]
    model = QPM.from_pretrained(qpm_dir)
    assert model.backbone.adapter is None
    assert model.backbone.num_features == config["backbone"]["num_features"]


# -- the fit config ----------------------------------------------------------------------------
def _fit_config(**model) -> dict:
    return {**TINY, "model": {**TINY["model"], **model}}


@pytest.mark.parametrize(
    ("model", "problem"),
    [
        ({"freeze_backbone": True}, r"'model\.freeze_backbone' needs model\.adapter"),
        (
            {"adapter": {"kind": "conv1x1", "features": 8, "hidden": 4}},
            r"'model\.adapter\.hidden' must not be set",
        ),
        ({"adapter": {"kind": "mlp", "features": 8}}, r"'model\.adapter\.hidden' is required"),
    ],
)
def test_fit_config_adapter_problems_name_the_field(model, problem):
    with pytest.raises(FitConfigError, match=problem):
        FitConfig.from_dict(_fit_config(**model), source="recipe.yaml")


def test_assignment_n_is_checked_against_the_adapter_features(tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    config = _fit_config(adapter={"kind": "conv1x1", "features": 6})
    path.write_text(yaml.safe_dump(config))
    assert training_main(["fit", str(path), "--out", str(tmp_path / "run")]) == 2
    assert (
        "'assignment.n' is 8, more than the 6 features of backbone 'test_resnet' (its adapter's)"
        in capsys.readouterr().err
    )


# -- training on the frozen trunk's maps -------------------------------------------------------
def test_map_loader_batches_every_map_once_per_epoch_in_a_seeded_order():
    cached = TrunkMaps(torch.arange(10.0).reshape(10, 1, 1, 1).half(), torch.arange(10), 0.0)
    loader = MapLoader(cached, 4, shuffle=True, seed=3)
    assert len(loader) == 3

    def order(epoch):
        loader.set_epoch(epoch)
        return torch.cat([y for _, y in loader]).tolist()

    assert sorted(order(0)) == list(range(10)) and order(0) == order(0) != order(1)
    maps, labels = next(iter(MapLoader(cached, 4)))
    assert maps.dtype == torch.float32 and torch.equal(maps.flatten(), labels.float())
    assert len(MapLoader(cached, 4, drop_last=True)) == 2


FROZEN = {
    "adapter": {"kind": "mlp", "features": 12, "hidden": 16},
    "freeze_backbone": True,
}


def test_frozen_backbone_trains_the_adapter_on_cached_maps(tmp_path):
    """Dense training and fine-tuning change the adapter and nothing of the timm model (its
    batch-norm statistics included); both run on maps computed once."""
    config = FitConfig.from_dict(_fit_config(**FROZEN), source="recipe")
    run = FitRun(config, tmp_path / "run")
    run.record_config()
    summary = run.runner.run(run.stages()[:-1])  # all but the metrics: they read no adapter
    assert summary["dense"]["cached_maps_seconds"] > 0
    ctx = run.context
    ctx.seed()
    initial = ctx.new_dense_model().state_dict()
    dense = load_file(str(tmp_path / "run" / "dense" / "weights.safetensors"))
    final = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    trunk = [k for k in initial if k.startswith("backbone.model.")]
    adapter = [k for k in initial if k.startswith("backbone.adapter.") and k.endswith("weight")]
    assert trunk and adapter
    for key in trunk:
        assert torch.equal(initial[key], dense[key]), key
        assert torch.equal(dense[key], final[key]), key
    assert all(not torch.equal(initial[k], dense[k]) for k in adapter)
    assert any(not torch.equal(dense[k], final[k]) for k in adapter)  # fine-tuning trains it
    model = QPM.from_pretrained(tmp_path / "run" / "model")
    assert model.config.backbone.adapter.features == 12
    assert model.config.training["model"]["freeze_backbone"] is True
    assert 0 <= model.config.metrics["accuracy"] <= 1
