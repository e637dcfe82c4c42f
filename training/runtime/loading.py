"""DataLoader settings that keep a GPU busy and runs reproducible."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

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


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one training sample's augmentation in one epoch: it differs across samples
    (so across workers and ranks) and epochs, and does not depend on which worker or process
    loads the sample, so a rerun, a resumed run and a run on more processes draw the same."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """torch, numpy and random seeded with `seed` inside, their previous states restored after
    (a loader in the main process must not reset the training loop's dropout RNG)."""
    states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


def seed_worker(worker_id: int) -> None:
    """worker_init_fn: numpy and random follow the seed torch gave this worker (torch's own
    per-worker seed is base seed + worker id; the base seed comes from the loader's generator)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
