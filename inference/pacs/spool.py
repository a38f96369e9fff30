"""A durable spool for received instances, with study state that survives restarts.

Layout under the spool root (every name built from a sanitised UID, never a raw one)::

    incoming/<study>/<sop>.dcm     written atomically and fsynced before C-STORE success
    processing/<study>/            claimed by the worker (atomic directory rename)
    done/<study>/                  analysed and sent

A study is complete when no instance arrived for ``idle_seconds``.  A claimed study that a
crash left in ``processing/`` is analysed again on restart; the SR and overlay UIDs are
deterministic, so a PACS that receives them twice keeps one copy.  Instances that arrive
for a study already done start a new ``incoming/`` entry and are analysed with it.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from pydicom.dataset import Dataset

from calcdx.errors import PacsError
from calcdx.inference.study import safe_name

logger = logging.getLogger(__name__)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Durable storage of received instances grouped by study."""

    def __init__(self, root: str | Path, idle_seconds: float = 5.0) -> None:
        self.root = Path(root).resolve()
        self.idle_seconds = idle_seconds
        for name in ("incoming", "processing", "done", "tmp"):
            (self.root / name).mkdir(parents=True, exist_ok=True)

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise PacsError(f"refusing a spool path outside the spool root: {path}")
        return resolved

    def store(self, ds: Dataset) -> Path:
        """Write ``ds`` durably (tmp file, fsync, rename, fsync of the directory); return its path."""
        study = safe_name(str(ds.get("StudyInstanceUID", "")))
        sop = safe_name(str(ds.get("SOPInstanceUID", "")))
        folder = self._inside(self.root / "incoming" / study)
        folder.mkdir(parents=True, exist_ok=True)
        final = self._inside(folder / f"{sop}.dcm")
        tmp = self._inside(self.root / "tmp" / f"{study}.{sop}.{os.getpid()}.{time.monotonic_ns()}.part")
        ds.save_as(tmp, enforce_file_format=True)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(folder)
        return final

    def ready_studies(self, now: float | None = None) -> list[Path]:
        """Incoming studies idle for ``idle_seconds`` (newest file older than that)."""
        now = time.time() if now is None else now
        ready = []
        for folder in sorted((self.root / "incoming").iterdir()):
            files = list(folder.glob("*.dcm"))
            if files and now - max(f.stat().st_mtime for f in files) >= self.idle_seconds:
                ready.append(folder)
        return ready

    def claim(self, folder: Path) -> Path | None:
        """Move a ready study to ``processing/`` (atomic); None if it is already there (merge later)."""
        target = self.root / "processing" / folder.name
        if target.exists():
            return None
        os.replace(folder, target)
        _fsync_dir(self.root / "processing")
        return target

    def leftovers(self) -> list[Path]:
        """Studies claimed before a crash: to be analysed again."""
        return sorted(p for p in (self.root / "processing").iterdir() if p.is_dir())

    def finish(self, folder: Path) -> Path:
        """Move a processed study to ``done/`` (merging with an earlier batch of the same study)."""
        target = self.root / "done" / folder.name
        if target.exists():
            for f in folder.iterdir():
                os.replace(f, target / f.name)
            shutil.rmtree(folder)
        else:
            os.replace(folder, target)
        _fsync_dir(self.root / "done")
        return target
