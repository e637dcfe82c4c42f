"""Logging for pipeline runs: a log file in the run folder, and console lines that do not tear
through tqdm's progress bars."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


class _TqdmHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never crash a run
            self.handleError(record)


def progress(iterable: Iterable[T], desc: str, **kwargs: Any) -> Iterable[T]:
    """A progress bar on a terminal; nothing in logs and pipes (CI), where the log lines suffice."""
    return tqdm(iterable, desc=desc, unit="batch", leave=False, disable=None, **kwargs)


def setup_logging(log_file: Path | None, quiet: bool = False) -> logging.Logger:
    """Configure the 'training' logger: INFO to the console (unless quiet) and to `log_file`."""
    logger = logging.getLogger("training")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    if not quiet:
        console = _TqdmHandler()
        console.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(console)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    return logger
