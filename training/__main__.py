"""`python -m training`: the commands registered in training.cli."""

import sys

from .cli import main

sys.exit(main())
