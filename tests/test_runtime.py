"""How a fit runs on the machine: device resolution, mixed precision, channels_last, compile,
loader workers and seeding, and the scale recorded in the checkpoint (all checkable on a CPU)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from training.config import FitConfig, RuntimeSection
from training.errors import DeviceError, FitConfigError
from training.nn.dense import DenseClassifier
from training.nn.loops import PhaseRuntime, train_phase, training_module
from training.runtime import Distributed, Precision, default_num_workers, resolve_device
from training.runtime.loading import loader_seed


def test_auto_device_is_cuda_when_present_else_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert RuntimeSection().device == "auto"  # the default


def test_cuda_without_a_gpu_is_one_line_before_any_work(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match=r"runtime.device: 'cuda' was asked for but no CUDA GPU"):
        resolve_device("cuda")
    from training.pipeline import FitRun

    config = FitConfig.from_dict(
        {
            "data": {"name": "concepts"},
            "model": {"backbone": "test_resnet"},
            "runtime": {"device": "cuda"},
        }
    )
    with pytest.raises(DeviceError, match="runtime.device"):
        FitRun(config, "unused-run-folder")


def test_cuda_index_beyond_the_gpus_of_the_node(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(DeviceError, match="GPU 2 was asked for but this machine shows 2"):
        resolve_device("cuda", local_rank=2)


def test_runtime_section_rejects_unknown_devices_and_precisions():
    with pytest.raises(FitConfigError, match="runtime.device.*no torch device"):
        FitConfig.from_dict(
            {"data": {"name": "concepts"}, "model": {}, "runtime": {"device": "gpu0"}}
        )
    with pytest.raises(FitConfigError, match="runtime.precision"):
        FitConfig.from_dict(
            {"data": {"name": "concepts"}, "model": {}, "runtime": {"precision": "fp8"}}
        )
    assert RuntimeSection(device="cuda:1").device == "cuda:1"


def test_fp16_needs_cuda_and_only_fp16_scales_the_loss(monkeypatch):
    with pytest.raises(DeviceError, match="fp16 needs CUDA"):
        Precision("fp16", "cpu")
    assert not Precision("bf16", "cpu").grad_scaler().is_enabled()
    assert not Precision("fp32", "cpu").grad_scaler().is_enabled()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # what a GPU machine reports
    assert Precision("fp16", "cuda").grad_scaler().is_enabled()
    assert not Precision("bf16", "cuda").grad_scaler().is_enabled()


def test_bf16_autocast_on_cpu_computes_in_bf16():
    layer = nn.Linear(4, 3)
    with Precision("bf16", "cpu").autocast():
        assert layer(torch.randn(2, 4)).dtype == torch.bfloat16
    with Precision("fp32", "cpu").autocast():
        assert layer(torch.randn(2, 4)).dtype == torch.float32


class _Maps(nn.Module):
    num_features = 6

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x))


def _batches(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g))
        for _ in range(n)
    ]


@pytest.mark.parametrize(
    "precision, channels_last", [("bf16", True), ("fp32", True), ("bf16", False)]
)
def test_mixed_precision_phase_keeps_float32_weights(tmp_path, precision, channels_last):
    from training.config import DenseSection

    torch.manual_seed(0)
    model = DenseClassifier(_Maps(), 3)
    section = DenseSection(epochs=2, batch_size=8, lr=0.05, augment="none")
    runtime = PhaseRuntime(precision=Precision(precision, "cpu"), channels_last=channels_last)
    history = train_phase(
        model,
        lambda: model.linear.weight,
        [{"params": list(model.parameters())}],
        section,
        _batches(),
        _batches(2, 1),
        torch.device("cpu"),
        tmp_path,
        "test",
        runtime=runtime,
    )
    assert len(history) == 2 and history[-1].test_accuracy is not None
    assert all(p.dtype == torch.float32 for p in model.state_dict().values())
    assert all(p.is_contiguous() for p in model.parameters())  # saved as ordinary tensors
    state = torch.load(tmp_path / "resume.pt", weights_only=True)
    assert "scaler" in state and state["epoch"] == 2


def test_training_module_wraps_in_compile_when_asked(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module: compiled.append(module) or module)
    model = DenseClassifier(_Maps(), 3)
    step = training_module(
        model, torch.device("cpu"), PhaseRuntime(compile=True, channels_last=True)
    )
    assert compiled == [step]
    assert model.linear.weight is next(
        p for n, p in step.named_parameters() if n.endswith("linear.weight")
    )
    assert model.backbone.conv.weight.is_contiguous(memory_format=torch.channels_last)
    out = step(torch.randn(2, 3, 8, 8))
    assert out.logits.shape == (2, 3) and out.feature_maps.shape == (2, 6, 8, 8)


def test_default_workers_leave_a_core_to_the_loop(monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(2)), raising=False)
    assert default_num_workers() == 0  # this machine: load in the main process
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert default_num_workers() == 8
    assert default_num_workers(world_size=4) == 3


def test_loader_seeds_differ_across_ranks_and_epochs_and_repeat():
    seeds = {loader_seed(0, rank, epoch) for rank in range(2) for epoch in range(3)}
    assert len(seeds) == 6
    assert loader_seed(0, 1, 2) == loader_seed(0, 1, 2)


def test_torchrun_environment():
    assert Distributed.from_env({}) == Distributed()
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}
    d = Distributed.from_env(env)
    assert (d.rank, d.world_size, d.enabled, d.is_main) == (1, 2, True, False)
    assert d.shard(5) == [1, 3]
    from training.errors import DistributedError

    with pytest.raises(DistributedError, match="RANK=2 outside WORLD_SIZE=2"):
        Distributed.from_env({**env, "RANK": "2"})


def test_one_process_runs_main_only_work_and_raises_its_errors():
    d = Distributed()
    assert d.on_main(lambda: 3) == 3 and d.broadcast("x") == "x" and d.gather(1) == [1]
    with pytest.raises(KeyError):
        d.on_main(lambda: {}["missing"])


def test_the_recorded_scale_is_not_part_of_the_recipe_evaluate_reads(tmp_path):
    import json

    from training.commands.evaluate import load_recipe

    recipe = FitConfig.from_dict({"data": {"name": "concepts"}, "model": {}}).to_dict()
    scale = {"world_size": 2, "dense": {"effective_batch_size": 32}}
    (tmp_path / "config.json").write_text(json.dumps({"training": {**recipe, "scale": scale}}))
    assert load_recipe(tmp_path, None).to_dict() == recipe
