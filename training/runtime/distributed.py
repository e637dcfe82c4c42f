"""The torch.distributed process group of a `torchrun` launch, and the few collectives the
pipeline needs.

Without torchrun (no WORLD_SIZE in the environment) everything here is a no-op for one process,
so the stages are written once for both. Rank 0 is the only writer of the run folder; work
that only one process should do (the assignment's solver, the evaluation) runs there and its
result, or its error, is broadcast, so a failing rank stops every rank with the same message.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from ..errors import DistributedError

T = TypeVar("T")

#: how long a collective waits for the other ranks before it fails (instead of hanging)
DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class Distributed:
    """This process's place in the launch: rank, world size and rank on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Distributed:
        """From torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK); one process without them."""
        env = os.environ if environ is None else environ
        if "WORLD_SIZE" not in env:
            return cls()
        try:
            rank, world, local = (int(env[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
        except (KeyError, ValueError) as exc:
            raise DistributedError(
                f"torchrun environment: RANK, WORLD_SIZE and LOCAL_RANK must be integers ({exc})"
            ) from None
        if not 0 <= rank < world:
            raise DistributedError(f"torchrun environment: RANK={rank} outside WORLD_SIZE={world}")
        return cls(rank=rank, world_size=world, local_rank=local)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def init(self, device: torch.device, timeout: datetime.timedelta = DEFAULT_TIMEOUT) -> None:
        """Join the process group: NCCL between GPUs, gloo between CPUs."""
        if not self.enabled or dist.is_initialized():
            return
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, timeout=timeout, **kwargs)

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast(self, value: T) -> T:
        """Rank 0's `value` on every rank (any picklable object)."""
        if not self.enabled:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, fn: Callable[[], T]) -> T:
        """`fn()` run on rank 0 only; every rank returns its result, or raises its error (the
        same exception, so every rank reports the same one-line message)."""
        outcome: tuple[bool, Any] = (True, None)
        if self.is_main:
            try:
                outcome = (True, fn())
            except Exception as exc:
                if not self.enabled:
                    raise
                outcome = (False, exc)
        ok, value = self.broadcast(outcome)
        if not ok:
            raise value
        return value

    def sum(self, array: np.ndarray) -> np.ndarray:
        """The element-wise sum over ranks, in float64 (the statistics' sufficient sums)."""
        if not self.enabled:
            return np.asarray(array, dtype=np.float64)
        tensor = torch.as_tensor(np.asarray(array, dtype=np.float64)).clone()
        if dist.get_backend() == "nccl":  # NCCL reduces GPU tensors only
            tensor = tensor.cuda()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.cpu().numpy()

    def gather(self, value: T) -> list[T] | None:
        """Every rank's `value`, in rank order, on rank 0 (None elsewhere)."""
        if not self.enabled:
            return [value]
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, out, dst=0)
        return out

    def shard(self, size: int) -> list[int]:
        """This rank's share of `size` ordered items (rank, rank + world, ...): every item on
        exactly one rank, none repeated, so sums over the shards equal the sum over all."""
        return list(range(self.rank, size, self.world_size))
