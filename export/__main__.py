"""`python -m export`: the commands registered in export.cli."""

import sys

from .cli import main

sys.exit(main())
