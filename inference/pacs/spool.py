"""A durable spool for received instances, with study state that survives restarts.

Layout under the spool root (every name built from a sanitised UID, never a raw one)::

    incoming/<study>/<sop>.dcm     written atomically and fsynced before C-STORE success
    processing/<study>/            claimed by the worker (atomic directory rename)
    processing/<study>/.sent       results delivered; only the move to done/ is left
    done/<study>/                  analysed and sent

The state is the directory a study sits in, so it survives SIGKILL and restarts: a study
that a crash left in ``processing/`` without ``.sent`` is analysed again on restart (the SR
and overlay UIDs are deterministic, so a PACS that receives them twice keeps one copy); one
with ``.sent`` is only moved to ``done/``.  Instances that arrive for a study being processed
or already done start a new ``incoming/`` entry and are analysed as a new batch, together with the
instances of the earlier batches (``Spool.earlier_instances``), so the study's results cover them all.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import threading
import time
from pathlib import Path

from pydicom.dataset import Dataset

from calcdx.errors import PacsError

logger = logging.getLogger(__name__)

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
SENT_MARKER = ".sent"


def uid_key(uid: str) -> str:
    """A file-name-safe key for a UID: the UID itself when it follows the DICOM UID grammar
    (digits and dots, at most 64 characters), else ``x`` + a SHA-256 prefix (never a path)."""
    if uid and len(uid) <= 64 and _UID.match(uid):
        return uid
    return "x" + hashlib.sha256(uid.encode("utf-8", "replace")).hexdigest()[:40]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Durable storage of received instances grouped by study.

    Thread-safe within one process (the SCP's handler threads store while the worker claims).
    """

    def __init__(self, root: str | Path, idle_seconds: float = 5.0) -> None:
        self.root = Path(root).resolve()
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        for name in ("incoming", "processing", "done", "tmp"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        for stale in (self.root / "tmp").iterdir():  # partial writes of a crashed process: never acknowledged
            stale.unlink(missing_ok=True)

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root) or resolved == self.root:
            raise PacsError(f"refusing a spool path outside the spool root: {path}")
        return resolved

    def store(self, ds: Dataset) -> Path:
        """Write ``ds`` durably (tmp file, fsync, rename, fsync of the directory); return its path.

        Returns only once the instance is on disk: the caller may then acknowledge the C-STORE.

        Raises:
            PacsError: the path would leave the spool root (cannot happen with ``uid_key``).
            OSError: the disk is full or not writable.
        """
        study = uid_key(str(ds.get("StudyInstanceUID", "")))
        sop = uid_key(str(ds.get("SOPInstanceUID", "")))
        tmp = self._inside(self.root / "tmp" / f"{study}.{sop}.{threading.get_ident()}.{time.monotonic_ns()}.part")
        try:
            ds.save_as(tmp, enforce_file_format=True)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            with self._lock:  # the worker must not move the study folder between mkdir and rename
                folder = self._inside(self.root / "incoming" / study)
                folder.mkdir(exist_ok=True)
                final = self._inside(folder / f"{sop}.dcm")
                os.replace(tmp, final)
                _fsync_dir(folder)
                _fsync_dir(folder.parent)
        finally:
            tmp.unlink(missing_ok=True)
        return final

    def ready_studies(self, now: float | None = None) -> list[Path]:
        """Incoming studies idle for ``idle_seconds`` (newest file older than that), oldest first."""
        now = time.time() if now is None else now
        ready = []
        for folder in (self.root / "incoming").iterdir():
            try:
                newest = max((f.stat().st_mtime for f in folder.glob("*.dcm")), default=None)
            except FileNotFoundError:  # claimed meanwhile
                continue
            if newest is not None and now - newest >= self.idle_seconds:
                ready.append((newest, folder))
        return [f for _, f in sorted(ready)]

    def claim(self, folder: Path) -> Path | None:
        """Move a ready study to ``processing/`` (atomic); None if a batch of it is already there."""
        with self._lock:
            target = self.root / "processing" / folder.name
            if target.exists() or not folder.exists():
                return None
            os.replace(folder, target)
            _fsync_dir(self.root / "processing")
            _fsync_dir(self.root / "incoming")
        return target

    def leftovers(self) -> list[Path]:
        """Studies claimed before a crash (still in ``processing/``)."""
        return sorted(p for p in (self.root / "processing").iterdir() if p.is_dir())

    @staticmethod
    def is_sent(folder: Path) -> bool:
        """Whether the results of this claimed study were delivered (``.sent`` marker)."""
        return (folder / SENT_MARKER).exists()

    @staticmethod
    def mark_sent(folder: Path) -> None:
        """Record durably that the results of this claimed study were delivered."""
        marker = folder / SENT_MARKER
        with open(marker, "w", encoding="utf-8") as fh:
            fh.write(f"{time.time():.3f}\n")
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_dir(folder)

    def earlier_instances(self, folder: Path) -> list[Path]:
        """The instances of earlier batches of a claimed study (in ``done/``) that this batch does not hold
        again: a late image is analysed with them, so the study's results cover every image received."""
        done = self.root / "done" / folder.name
        if not done.is_dir():
            return []
        again = {f.name for f in folder.glob("*.dcm")}
        return sorted(f for f in done.glob("*.dcm") if f.name not in again)

    def finish(self, folder: Path) -> Path:
        """Move a processed study to ``done/`` (merging with an earlier batch of the same study)."""
        target = self.root / "done" / folder.name
        if target.exists():
            for f in folder.iterdir():
                if f.name != SENT_MARKER:
                    os.replace(f, target / f.name)
            shutil.rmtree(folder)
        else:
            os.replace(folder, target)
            (target / SENT_MARKER).unlink(missing_ok=True)
        _fsync_dir(self.root / "done")
        _fsync_dir(self.root / "processing")
        return target

    def counts(self) -> dict[str, int]:
        """Number of spooled instances per state (for status output and tests)."""
        return {state: sum(1 for _ in (self.root / state).glob("*/*.dcm"))
                for state in ("incoming", "processing", "done")}
