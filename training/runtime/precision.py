"""Mixed precision for the SGD phases: autocast to bf16 or fp16, a gradient scaler for fp16.

Weights, optimiser state and everything saved stay float32 (autocast only changes the dtype
of the operations), so a checkpoint trained in bf16 loads anywhere.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch

PrecisionName = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """One `runtime.precision` on one device type."""

    name: PrecisionName
    device_type: str  #: "cpu" or "cuda"

    def __post_init__(self) -> None:
        from ..errors import DeviceError  # here: the module stays torch-only for gpu_check.py

        if self.name not in PRECISIONS:
            raise DeviceError(f"runtime.precision: {self.name!r} is not one of {PRECISIONS}")
        if self.name == "fp16" and self.device_type != "cuda":
            raise DeviceError(
                f"runtime.precision: fp16 needs CUDA (its gradient scaler), the device is "
                f"{self.device_type}; use bf16 or fp32"
            )

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES.get(self.name, torch.float32)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward pass's context: torch.autocast, or nothing in fp32."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling against fp16 gradient underflow; a disabled (pass-through) scaler for
        fp32 and bf16, whose range needs none."""
        return torch.amp.GradScaler(self.device_type, enabled=self.name == "fp16")
