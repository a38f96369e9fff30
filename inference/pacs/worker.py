"""The analysis worker of the DICOM node: complete studies -> ``analyze_study`` -> C-STORE of SR + overlays.

Exactly-once bookkeeping lives in the spool (``claim`` -> ``mark_sent`` -> ``finish``); this
module only decides what to do with each state, so a SIGKILL at any point is recovered on
restart: a claimed study without ``.sent`` is analysed and sent again (deterministic UIDs),
one with ``.sent`` is only moved to ``done/``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pydicom
from pynetdicom import AE

from calcdx.errors import PacsError
from calcdx.inference.pacs.config import NodeConfig, Peer
from calcdx.inference.pacs.spool import Spool

logger = logging.getLogger(__name__)

# Success and the warning statuses a Storage SCP may return for a stored instance (PS3.4 B.2.3)
STORE_OK = frozenset({0x0000, 0xB000, 0xB006, 0xB007})


def uid_hash(uid: str) -> str:
    """A short hash of a UID for logs (UIDs can identify a patient's study)."""
    return hashlib.sha256(uid.encode()).hexdigest()[:10]


def send_results(paths: Sequence[Path], destination: str, *, calling_aet: str, retries: int = 5,
                 backoff_seconds: float = 1.0, connection_timeout: float = 10.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
    """C-STORE ``paths`` to ``destination`` (``AET@host:port``), retrying with exponential back-off.

    Each attempt opens one association and sends every object; an attempt that fails for any
    object is repeated whole (the objects carry deterministic UIDs, so a PACS keeps one copy).
    Waits ``backoff_seconds``, then twice that, ... between attempts.

    Raises:
        PacsError: the destination refused or could not be reached after ``retries`` attempts.
    """
    peer = Peer.parse(destination)
    datasets = [pydicom.dcmread(p) for p in paths]
    if not datasets:
        return
    delay = backoff_seconds
    last = "no attempt"
    for attempt in range(1, retries + 1):
        ae = AE(ae_title=calling_aet)
        ae.connection_timeout = connection_timeout
        for ds in datasets:
            ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
        if assoc.is_established:
            try:
                statuses = [assoc.send_c_store(ds) for ds in datasets]
            finally:
                assoc.release()
            bad = [s for s in statuses if not s or s.Status not in STORE_OK]
            if not bad:
                return
            last = f"status {[hex(s.Status) if s else None for s in bad]}"
        else:
            last = "association rejected, aborted or not reachable"
        logger.warning("sending results to %s failed (%s), attempt %d of %d", peer.ae_title, last, attempt, retries)
        if attempt < retries:
            sleep(delay)
            delay *= 2
    raise PacsError(f"could not send results to {destination}: {last}")


class StudyWorker:
    """Polls the spool, analyses complete studies and delivers their results."""

    def __init__(self, config: NodeConfig, spool: Spool, predictor: Callable[[], Any]) -> None:
        self.config = config
        self.spool = spool
        self._predictor = predictor
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.processed = 0
        self.failed = 0
        self._retry: dict[str, tuple[int, float]] = {}  # folder name -> (failures, retry at)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="calcdx-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        for folder in self.spool.leftovers():  # claimed before a crash
            if self._stop.is_set():
                return
            self.process(folder)
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(0.25)

    def run_once(self, *, now: float | None = None) -> int:
        """Retry failed studies that are due, claim and process every ready study; returns how many
        were processed.  A failed study is retried after 10 s, 20 s, ... (at most 10 min)."""
        n = 0
        clock = time.time()
        for folder in self.spool.leftovers():
            if folder.name in self._retry and self._retry[folder.name][1] <= clock and not self._stop.is_set():
                n += self.process(folder)
        for folder in self.spool.ready_studies(now=now):
            if self._stop.is_set():
                break
            claimed = self.spool.claim(folder)
            if claimed is not None:
                n += self.process(claimed)
        return n

    def process(self, folder: Path) -> int:
        """Analyse one claimed study and send its results; 1 on success, 0 when left for a retry."""
        from calcdx.inference import analyze_study

        try:
            if not self.spool.is_sent(folder):
                out = Path(self.config.out_dir) / folder.name
                # one folder per study, one follow-up history for the node: a patient's later study is
                # compared with the prior the node analysed before it
                # a late image: the study is analysed again with what arrived before, so its JSON, SR and
                # follow-up entry cover every image, never only the latest batch
                paths = sorted([*folder.glob("*.dcm"), *self.spool.earlier_instances(folder)], key=lambda p: p.name)
                result = analyze_study(paths, self._predictor(), out, history_dir=self.config.out_dir)
                outputs = [p for p in (result.sr_path, *result.overlay_scs) if p is not None]
                if self.config.destination:
                    send_results(outputs, self.config.destination, calling_aet=self.config.ae_title,
                                 retries=self.config.send_retries, backoff_seconds=self.config.send_backoff_seconds,
                                 connection_timeout=self.config.connection_timeout)
                self.spool.mark_sent(folder)
                logger.info("study %s analysed: %d image(s), %d result object(s) sent", uid_hash(result.study_uid),
                            len(result.result.get("images", [])), len(outputs))
            self.spool.finish(folder)
        except Exception as exc:  # keep the worker alive; the study stays in processing/ for a retry
            self.failed += 1
            failures = self._retry.get(folder.name, (0, 0.0))[0] + 1
            self._retry[folder.name] = (failures, time.time() + min(600.0, 10.0 * 2 ** (failures - 1)))
            logger.error("study %s failed (attempt %d), kept for a retry: %s: %s", uid_hash(folder.name), failures,
                         type(exc).__name__, exc)
            return 0
        self._retry.pop(folder.name, None)
        self.processed += 1
        return 1
