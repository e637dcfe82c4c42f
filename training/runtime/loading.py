"""DataLoader settings that keep a GPU busy and runs reproducible."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

#: at most this many loader workers by default (more rarely helps one GPU, and costs memory)
MAX_DEFAULT_WORKERS = 8


def default_num_workers(world_size: int = 1) -> int:
    """The CPUs this process may use, shared by the processes of this node, less one for the
    training loop itself: 0 (load in the main process) on a 2-core machine."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    per_process = cpus // max(1, world_size)
    return max(0, min(MAX_DEFAULT_WORKERS, per_process - 1)) if per_process > 2 else 0


def loader_seed(seed: int, rank: int, epoch: int) -> int:
    """The seed of one process's loader in one epoch: the workers' seeds derive from it, so
    augmentations differ across workers, ranks and epochs, and a rerun draws the same."""
    return int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1)[0])


def seed_worker(worker_id: int) -> None:
    """worker_init_fn: numpy and random follow the seed torch gave this worker (torch's own
    per-worker seed is base seed + worker id; the base seed comes from the loader's generator)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
