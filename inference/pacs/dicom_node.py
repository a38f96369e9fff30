"""``calcdx serve dicom``: a Storage SCP that analyses complete studies and sends the SR and overlays back.

Security defaults: only calling AE titles on the allow-list (optionally bound to a host), the
called AE title must be ours, at most 4 concurrent associations, a 16 MiB maximum PDU, and
ACSE / DIMSE / network timeouts.  AE titles are **not authentication**: on any network that
is not fully trusted, run with TLS and client certificates (``tls_*`` settings).  Logs carry
UIDs' hashes and counts, never patient names or IDs (unless ``log_patient_data``).
"""

from __future__ import annotations

import logging
import ssl
import threading
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from calcdx.datasets.discovery import is_own_output
from calcdx.errors import ConfigError
from calcdx.inference.pacs.config import NodeConfig, Peer
from calcdx.inference.pacs.spool import Spool
from calcdx.inference.pacs.worker import StudyWorker, send_results, uid_hash

logger = logging.getLogger(__name__)

STATUS_SUCCESS = 0x0000
STATUS_NOT_AUTHORISED = 0x0124  # "Refused: Not Authorized"
STATUS_OUT_OF_RESOURCES = 0xA700

__all__ = ["DicomNode", "NodeConfig", "Peer"]


def ssl_context(config: NodeConfig) -> ssl.SSLContext | None:
    """The server TLS context (TLS 1.2+), requiring client certificates when ``tls_ca`` is set.

    Raises:
        ConfigError: a certificate, key or CA file cannot be loaded.
    """
    if not config.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(config.tls_cert, config.tls_key)
        if config.tls_ca:
            ctx.load_verify_locations(config.tls_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS certificate, key or CA: {exc}", path=config.tls_cert) from exc
    return ctx


class DicomNode:
    """The Storage SCP, its spool and the analysis worker."""

    def __init__(self, config: NodeConfig, predictor: Any = None) -> None:
        self.config = config
        self.spool = Spool(config.spool_dir, idle_seconds=config.study_idle_seconds)
        self._predictor = predictor
        self._predictor_lock = threading.Lock()
        self._server: Any = None
        self.worker = StudyWorker(config, self.spool, lambda: self.predictor)
        self.received = 0
        self.refused = 0
        self.own_outputs = 0
        """calcdx's own SRs and overlays received (accepted, not spooled: analysing them would only replace the
        study's results with an empty batch)."""

    # ---------------------------------------------------------------- receiving
    def _on_store(self, event: Any) -> int:
        aet = event.assoc.requestor.ae_title.strip()
        host = event.assoc.requestor.address
        if not self.config.is_allowed(aet, host):
            self.refused += 1
            logger.warning("C-STORE refused: calling AE %s from %s is not on the allow-list", aet, host)
            return STATUS_NOT_AUTHORISED
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            if is_own_output(ds):  # calcdx's own SR or overlay sent back (a PACS routing the whole study)
                self.own_outputs += 1
                logger.info("passed over an SR or overlay that calcdx wrote (study %s): nothing to analyse",
                            uid_hash(str(ds.get("StudyInstanceUID", ""))))
                return STATUS_SUCCESS
            self.spool.store(ds)
        except Exception as exc:  # report failure to the sender; never crash the server thread
            logger.error("could not spool an instance: %s: %s", type(exc).__name__, exc)
            return STATUS_OUT_OF_RESOURCES
        self.received += 1
        if self.config.log_patient_data:
            logger.info("stored %s of study %s", ds.get("SOPInstanceUID"), ds.get("StudyInstanceUID"))
        else:
            logger.info("stored instance %s of study %s", uid_hash(str(ds.get("SOPInstanceUID", ""))),
                        uid_hash(str(ds.get("StudyInstanceUID", ""))))
        return STATUS_SUCCESS

    def _on_connect(self, event: Any) -> None:
        """Refuse associations from hosts that appear on no allow-list entry (before any PDU)."""
        host = event.assoc.requestor.address
        hosts = {e.partition("@")[2] for e in self.config.allowed}
        if "" not in hosts and host not in hosts:
            logger.warning("connection from %s refused: host on no allow-list entry", host)
            event.assoc.abort()

    def _on_rejected(self, event: Any) -> None:
        """Log every refused association (wrong called or calling AE title, too many associations)."""
        self.refused += 1
        logger.warning("association from %s (calling AE %s, called AE %s) rejected", event.assoc.requestor.address,
                       event.assoc.requestor.ae_title.strip(), event.assoc.acceptor.ae_title.strip())

    def _ae(self) -> AE:
        ae = AE(ae_title=self.config.ae_title)
        for context in AllStoragePresentationContexts:  # every storage class, compressed syntaxes included
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        ae.require_called_aet = True
        # association-level check; the C-STORE handler checks AE title and host together
        ae.require_calling_aet = sorted({e.partition("@")[0] for e in self.config.allowed}) or ["\x00NOBODY"]
        ae.maximum_associations = self.config.max_associations
        ae.maximum_pdu_size = self.config.max_pdu_bytes
        ae.acse_timeout = self.config.acse_timeout
        ae.dimse_timeout = self.config.dimse_timeout
        ae.network_timeout = self.config.network_timeout
        ae.connection_timeout = self.config.connection_timeout
        return ae

    def start(self, *, worker: bool = True) -> None:
        """Start listening (non-blocking) and, unless ``worker=False``, the analysis worker.

        Raises:
            ConfigError: TLS files cannot be loaded.
            OSError: the port cannot be bound.
        """
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_CONN_OPEN, self._on_connect),
                    (evt.EVT_REJECTED, self._on_rejected)]
        self._server = self._ae().start_server((self.config.host, self.config.port), block=False,
                                               evt_handlers=handlers, ssl_context=ssl_context(self.config))
        if worker:
            self.worker.start()
        logger.info("DICOM node %s listening on %s:%d (%s)", self.config.ae_title, self.config.host,
                    self.port, "TLS" if self.config.tls_cert else "no TLS")

    @property
    def port(self) -> int:
        """The bound TCP port (useful with ``port: 0``)."""
        if self._server is None:
            return self.config.port
        return int(self._server.server_address[1])

    def stop(self) -> None:
        """Stop accepting, let the worker finish its current study (30 s at most)."""
        if self._server is not None:
            self._server.shutdown()
        self.worker.stop()

    # ---------------------------------------------------------------- analysing
    @property
    def predictor(self) -> Any:
        with self._predictor_lock:
            if self._predictor is None:
                from calcdx.inference import Predictor

                self._predictor = Predictor(self.config.model_dir)
            return self._predictor

    def process_ready(self) -> int:
        """Process every claimed and every incoming study now, idle or not (tests, one-shot runs)."""
        n = sum(self.worker.process(f) for f in self.spool.leftovers())
        return n + self.worker.run_once(now=float("inf"))

    def send(self, paths: list[Any]) -> None:
        """C-STORE ``paths`` to the configured destination (see ``send_results``).  Raises PacsError."""
        send_results(paths, self.config.destination, calling_aet=self.config.ae_title,
                     retries=self.config.send_retries, backoff_seconds=self.config.send_backoff_seconds,
                     connection_timeout=self.config.connection_timeout)
