"""Step messages of the long export commands, on stderr so stdout stays clean for results."""

from __future__ import annotations

import sys
import time


class Steps:
    """Prints each step of a long command to stderr with the time the previous one took, so
    stdout stays clean for tables and JSON. Use it as a context manager: a step interrupted by
    an error is closed with "failed" before the error message is printed."""

    def __init__(self) -> None:
        self._started: float | None = None

    def __call__(self, message: str) -> None:
        self.done()
        print(f"{message} ...", end="", file=sys.stderr, flush=True)
        self._started = time.perf_counter()

    def done(self) -> None:
        if self._started is not None:
            print(f" {time.perf_counter() - self._started:.1f}s", file=sys.stderr, flush=True)
            self._started = None

    def __enter__(self) -> Steps:  # noqa: PYI034 - not meant to be subclassed
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None and self._started is not None:
            print(" failed", file=sys.stderr, flush=True)
            self._started = None
        self.done()
