"""`runtime.device` to a torch.device: checked before any work, so a missing GPU is one line."""

from __future__ import annotations

import torch

from ..errors import DeviceError

#: what `runtime.device` accepts besides an explicit torch device string such as "cuda:1"
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto`: CUDA when present, else the CPU. `cuda` under torchrun: the process's own GPU
    (LOCAL_RANK), so one config serves 1 and N processes."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        built = "without CUDA" if torch.version.cuda is None else f"with CUDA {torch.version.cuda}"
        raise DeviceError(
            f"runtime.device: {name!r} was asked for but no CUDA GPU is visible "
            f"(torch {torch.__version__} built {built}); use 'auto' or 'cpu'"
        )
    index = local_rank if device.index is None else device.index
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(
            f"runtime.device: GPU {index} was asked for but this machine shows {count} "
            f"(LOCAL_RANK={local_rank}); start at most {count} processes per node"
        )
    torch.cuda.set_device(index)
    return torch.device("cuda", index)
