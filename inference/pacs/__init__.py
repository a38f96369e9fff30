"""PACS front ends: the DICOM node (``calcdx serve dicom``)."""

from calcdx.inference.pacs.dicom_node import DicomNode, NodeConfig
from calcdx.inference.pacs.spool import Spool

__all__ = ["DicomNode", "NodeConfig", "Spool"]
