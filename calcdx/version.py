"""The calcdx version and manufacturer name, single source for the package and its outputs."""

__version__ = "0.1.0"

MANUFACTURER = "calcdx"
"""Manufacturer (0008,0070) of the DICOM objects calcdx writes (its SRs and overlay Secondary Captures):
how discovery knows them when a results folder lies inside the folders it reads."""
