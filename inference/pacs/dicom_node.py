"""``calcdx serve dicom``: a Storage SCP that analyses complete studies and sends the SR and overlays back.

Security defaults: only calling AE titles on the allow-list (optionally bound to a host), the
called AE title must be ours, at most 4 concurrent associations, a 16 MiB maximum PDU, and
ACSE / DIMSE / network timeouts.  AE titles are **not authentication**: on any network that
is not fully trusted, run with TLS and client certificates (``tls_*`` settings).  Logs carry
UIDs' hashes and counts, never patient names or IDs.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from calcdx.errors import ConfigError, PacsError
from calcdx.inference.pacs.spool import Spool

logger = logging.getLogger(__name__)

STATUS_SUCCESS = 0x0000
STATUS_NOT_AUTHORISED = 0x0124
STATUS_OUT_OF_RESOURCES = 0xA700


@dataclass(frozen=True)
class Peer:
    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Peer:
        """``AET@host:port``."""
        try:
            aet, rest = text.split("@", 1)
            host, port = rest.rsplit(":", 1)
            return cls(aet, host, int(port))
        except ValueError as exc:
            raise ConfigError(f'Argument "destination" should be AET@host:port, got {text!r}') from exc


@dataclass(frozen=True)
class NodeConfig:
    """Settings of the DICOM node (YAML keys are the field names)."""

    ae_title: str = "CALCDX"
    host: str = "127.0.0.1"
    port: int = 11112
    allowed: tuple[str, ...] = ()  # "AET" or "AET@host"; empty = refuse everyone
    destination: str = ""  # AET@host:port for the results
    spool_dir: str = "calcdx-spool"
    out_dir: str = "calcdx-results"
    model_dir: str | None = None
    study_idle_seconds: float = 5.0
    max_associations: int = 4
    max_pdu_bytes: int = 16 * 1024 * 1024
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    network_timeout: float = 60.0
    send_retries: int = 5
    send_backoff_seconds: float = 1.0
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None  # clients must present a certificate signed by this CA
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= len(self.ae_title) <= 16:
            raise ConfigError(f'Argument "ae_title" should have 1-16 characters, got {self.ae_title!r}')
        if not 0 < self.port < 65536:
            raise ConfigError(f'Argument "port" should be a TCP port, got {self.port}')
        if self.destination:
            Peer.parse(self.destination)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError('Arguments "tls_cert" and "tls_key" go together')

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> NodeConfig:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read node config: {exc}", path=path) from exc
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}", path=path)
        data.update({k: v for k, v in overrides.items() if v is not None})
        if "allowed" in data:
            data["allowed"] = tuple(data["allowed"])
        return cls(**data)

    def is_allowed(self, aet: str, host: str) -> bool:
        for entry in self.allowed:
            name, _, entry_host = entry.partition("@")
            if name == aet and (not entry_host or entry_host == host):
                return True
        return False


def _hash(uid: str) -> str:
    return hashlib.sha256(uid.encode()).hexdigest()[:10]


class DicomNode:
    """The Storage SCP, its spool and the analysis worker."""

    def __init__(self, config: NodeConfig, predictor: Any = None) -> None:
        self.config = config
        self.spool = Spool(config.spool_dir, idle_seconds=config.study_idle_seconds)
        self._predictor = predictor
        self._stop = threading.Event()
        self._server: Any = None
        self._worker: threading.Thread | None = None
        self.received = 0

    # ---------------------------------------------------------------- receiving
    def _on_store(self, event: Any) -> int:
        aet = event.assoc.requestor.ae_title.strip()
        host = event.assoc.requestor.address
        if not self.config.is_allowed(aet, host):
            logger.warning("C-STORE refused: calling AE %s from %s not on the allow-list", aet, host)
            return STATUS_NOT_AUTHORISED
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            self.spool.store(ds)
        except Exception as exc:  # report failure to the sender; never crash the server thread
            logger.error("could not spool an instance: %s", exc)
            return STATUS_OUT_OF_RESOURCES
        self.received += 1
        logger.info("stored instance %s of study %s", _hash(str(ds.SOPInstanceUID)),
                    _hash(str(ds.get("StudyInstanceUID", ""))))
        return STATUS_SUCCESS

    def _ae(self) -> AE:
        ae = AE(ae_title=self.config.ae_title)
        for context in AllStoragePresentationContexts:  # every storage class, compressed syntaxes included
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        ae.require_called_aet = True
        ae.require_calling_aet = [e.partition("@")[0] for e in self.config.allowed] or ["\x00NOBODY"]
        ae.maximum_associations = self.config.max_associations
        ae.maximum_pdu_size = self.config.max_pdu_bytes
        ae.acse_timeout = self.config.acse_timeout
        ae.dimse_timeout = self.config.dimse_timeout
        ae.network_timeout = self.config.network_timeout
        return ae

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.config.tls_cert:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        if self.config.tls_ca:
            ctx.load_verify_locations(self.config.tls_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def start(self, *, worker: bool = True) -> None:
        """Start listening (non-blocking) and, unless ``worker=False``, the analysis worker."""
        handlers = [(evt.EVT_C_STORE, self._on_store)]
        self._server = self._ae().start_server((self.config.host, self.config.port), block=False,
                                               evt_handlers=handlers, ssl_context=self._ssl_context())
        if worker:
            self._worker = threading.Thread(target=self._work, name="calcdx-worker", daemon=True)
            self._worker.start()
        logger.info("DICOM node %s listening on %s:%d", self.config.ae_title, self.config.host, self.config.port)

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        if self._worker is not None:
            self._worker.join(timeout=30)

    # ---------------------------------------------------------------- analysing
    @property
    def predictor(self) -> Any:
        if self._predictor is None:
            from calcdx.inference import Predictor

            self._predictor = Predictor(self.config.model_dir)
        return self._predictor

    def _work(self) -> None:
        for folder in self.spool.leftovers():  # claimed before a crash: analyse again
            self._process(folder)
        while not self._stop.is_set():
            for folder in self.spool.ready_studies():
                claimed = self.spool.claim(folder)
                if claimed is not None:
                    self._process(claimed)
            self._stop.wait(0.5)

    def process_ready(self) -> int:
        """Process every ready study now (used by tests and one-shot runs); returns how many."""
        n = 0
        for folder in [*self.spool.leftovers(), *self.spool.ready_studies(now=time.time() + 1e9)]:
            claimed = folder if folder.parent.name == "processing" else self.spool.claim(folder)
            if claimed is not None:
                self._process(claimed)
                n += 1
        return n

    def _process(self, folder: Path) -> None:
        from calcdx.inference import analyze_study

        out = Path(self.config.out_dir) / folder.name
        try:
            result = analyze_study(sorted(folder.glob("*.dcm")), self.predictor, out)
            outputs = [p for p in (result.sr_path, *result.overlay_scs) if p is not None]
            if self.config.destination:
                self.send(outputs)
            self.spool.finish(folder)
            logger.info("study %s analysed: %d result object(s) sent", _hash(result.study_uid), len(outputs))
        except Exception as exc:  # keep the worker alive; the study stays in processing/ for a retry
            logger.error("study %s failed: %s", folder.name[:12], exc)

    def send(self, paths: list[Path]) -> None:
        """C-STORE ``paths`` to the destination, retrying with exponential back-off.

        Raises:
            PacsError: the destination refused or could not be reached after all retries.
        """
        import pydicom

        peer = Peer.parse(self.config.destination)
        datasets = [pydicom.dcmread(p) for p in paths]
        delay = self.config.send_backoff_seconds
        last = "no attempt"
        for attempt in range(1, self.config.send_retries + 1):
            ae = AE(ae_title=self.config.ae_title)
            for ds in datasets:
                ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
            assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
            if assoc.is_established:
                try:
                    statuses = [assoc.send_c_store(ds) for ds in datasets]
                finally:
                    assoc.release()
                bad = [s for s in statuses if not s or s.Status not in (0x0000, 0xB000, 0xB007, 0xB006)]
                if not bad:
                    return
                last = f"status {[hex(s.Status) if s else None for s in bad]}"
            else:
                last = "association rejected or aborted"
            logger.warning("sending results to %s failed (%s), attempt %d", peer.ae_title, last, attempt)
            time.sleep(delay)
            delay *= 2
        raise PacsError(f"could not send results to {self.config.destination}: {last}")
