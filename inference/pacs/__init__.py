"""PACS front ends: the DICOM node (``calcdx serve dicom``), the DICOMweb service (``calcdx serve web``)
and the Orthanc integration files (``calcdx serve orthanc-config``).

Heavy parts (FastAPI, the model) are imported lazily: ``from calcdx.inference.pacs.web import create_app``.
"""

from calcdx.inference.pacs.config import NodeConfig, Peer, WebConfig
from calcdx.inference.pacs.dicom_node import DicomNode
from calcdx.inference.pacs.spool import Spool, uid_key
from calcdx.inference.pacs.worker import StudyWorker, send_results

__all__ = ["DicomNode", "NodeConfig", "Peer", "Spool", "StudyWorker", "WebConfig", "send_results", "uid_key"]
