import os
import sys

# Before torch loads OpenMP: on small, busy machines spinning OpenMP threads can make small
# tensor work tens of times slower (see environment.md). An explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .cli import main

sys.exit(main())
