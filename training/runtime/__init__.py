"""How a fit runs on the machine, not what it computes: the device, mixed precision, data
loading and the torch.distributed process group (docs/environment.md, "Training at scale")."""

from .device import resolve_device
from .distributed import Distributed
from .loading import default_num_workers
from .precision import Precision

__all__ = ["Distributed", "Precision", "default_num_workers", "resolve_device"]
