"""Cached, resumable pipeline stages.

Each stage's key is a hash of the config sections it reads and of the previous stage's key, so
a changed field invalidates the first stage that reads it and everything after, and nothing
before. A finished stage leaves `stages/<name>.json` (its key, timing and summary); a rerun with
the same key skips it.

Under torchrun every rank runs every stage (they share its collectives), but rank 0 alone
decides what to skip, prepares the folders and writes the records; the others follow its
decisions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from qpm_zoo.config import write_text_atomic

from .runtime.distributed import Distributed

log = logging.getLogger("training")


@dataclass(frozen=True)
class Stage:
    """One cached step: what it reads from the config, what it does, what it writes."""

    name: str
    sections: tuple[str, ...]  #: config sections (top-level keys) this stage's result depends on
    run: Callable[[], dict]  #: does the work, writes into its folder, returns a JSON-safe summary
    outputs: tuple[str, ...] = ()  #: folders under the run root it writes besides its own


class StageRunner:
    """Runs stages in order in one run folder, skipping those finished with the same key."""

    def __init__(
        self,
        root: Path,
        fingerprint: Callable[[tuple[str, ...]], str],
        dist: Distributed | None = None,
    ):
        self.root = root
        self.fingerprint = fingerprint
        self.records_dir = root / "stages"
        self.dist = dist or Distributed()

    def record_path(self, name: str) -> Path:
        return self.records_dir / f"{name}.json"

    def work_dir(self, name: str) -> Path:
        return self.root / name

    def read_record(self, name: str) -> dict | None:
        return read_stage_record(self.root, name)

    def keys(self, stages: list[Stage]) -> dict[str, str]:
        keys, previous = {}, ""
        for stage in stages:
            previous = hashlib.sha256(
                (previous + stage.name + self.fingerprint(stage.sections)).encode()
            ).hexdigest()[:16]
            keys[stage.name] = previous
        return keys

    def status(self, stages: list[Stage]) -> dict[str, str]:
        """'done', 'stale' (finished with another config) or 'pending', per stage."""
        out = {}
        for stage, key in zip(stages, self.keys(stages).values()):
            record = self.read_record(stage.name)
            out[stage.name] = (
                "pending" if record is None else ("done" if record.get("key") == key else "stale")
            )
        return out

    def run(self, stages: list[Stage]) -> dict[str, dict]:
        """Run what is not finished with the current config; return every stage's summary."""
        keys = self.keys(stages)
        summaries: dict[str, dict] = {}
        invalid = False
        for stage in stages:
            reused, invalid = self.dist.on_main(lambda: self._begin(stages, stage, keys, invalid))  # noqa: B023
            if reused is not None:
                summaries[stage.name] = reused
                continue
            self.dist.barrier()  # the folder is ready before any rank writes into it
            started = time.perf_counter()
            summary = stage.run()
            seconds = time.perf_counter() - started
            if self.dist.is_main:
                self._write_record(stage.name, keys[stage.name], seconds, summary)
            log.info("stage %s: finished in %.1f s", stage.name, seconds)
            summaries[stage.name] = summary
        self.dist.barrier()
        return summaries

    def _begin(
        self, stages: list[Stage], stage: Stage, keys: dict[str, str], invalid: bool
    ) -> tuple[dict | None, bool]:
        """(the summary to reuse, or None to run the stage; whether later stages are stale)."""
        record = self.read_record(stage.name)
        if not invalid and record is not None and record.get("key") == keys[stage.name]:
            log.info("stage %s: already finished (%s), reused", stage.name, record.get("finished"))
            return record.get("summary", {}), False
        if record is not None and record.get("key") != keys[stage.name]:
            log.info("stage %s: the config changed since it ran; running it again", stage.name)
        if not invalid:
            self._forget_from(stages, stage.name)
        self._prepare_work_dir(stage.name, keys[stage.name])
        log.info("stage %s: running", stage.name)
        return None, True

    def _write_record(self, name: str, key: str, seconds: float, summary: dict) -> None:
        write_text_atomic(
            self.record_path(name),
            json.dumps(
                {
                    "stage": name,
                    "key": key,
                    "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "seconds": round(seconds, 2),
                    "summary": summary,
                },
                indent=2,
            )
            + "\n",
        )

    def _forget_from(self, stages: list[Stage], name: str) -> None:
        """`name` reruns, so its record and every later stage's record and results are stale."""
        names = [s.name for s in stages]
        for later in stages[names.index(name) :]:
            self.record_path(later.name).unlink(missing_ok=True)
            stale = [self.root / out for out in later.outputs]
            if later.name != name:
                stale.append(self.work_dir(later.name))
            for folder in stale:
                if folder.exists():
                    shutil.rmtree(folder)

    def _prepare_work_dir(self, name: str, key: str) -> None:
        """Keep a stage's partial work (e.g. a training interrupted after some epochs) only if it
        was started with the same key; otherwise start the folder afresh."""
        folder = self.work_dir(name)
        marker = folder / ".stage-key"
        if folder.exists() and (not marker.exists() or marker.read_text().strip() != key):
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        marker.write_text(key + "\n")


def read_stage_record(run_dir: Path, name: str) -> dict | None:
    """A finished stage's record (key, timing, summary); None if it has not finished."""
    path = Path(run_dir) / "stages" / f"{name}.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # a damaged record means "not finished"


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
