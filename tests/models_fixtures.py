"""A tiny synthetic DICOM data set for the model and training tests (no simulator needed).

Each image is a noisy background with 0-2 "lesions"; every pattern has its own shape
(disc, horizontal line, cluster, ring, vertical bar, square), so a small network learns
them in a few steps.  Files: real DICOM (pydicom), annotations JSON, masks .npz, manifest.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from calcdx.datasets.manifest import ManifestRow, write_manifest
from calcdx.taxonomy import PATTERNS

DX_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"


def write_dx(path: Path, image: np.ndarray, spacing_mm: float, patient_id: str) -> None:
    """Write ``image`` (float in [0, 1]) as a 12-bit MONOCHROME2 DX file."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = DX_SOP_CLASS
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "DX"
    ds.PatientID = patient_id
    ds.Rows, ds.Columns = image.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [spacing_mm, spacing_mm]
    ds.ImagerPixelSpacing = [spacing_mm, spacing_mm]
    ds.PixelData = (np.clip(image, 0, 1) * 4095).astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def _shape_mask(kind: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    rr, cc = np.mgrid[:h, :w]
    r, c = rng.integers(20, h - 20), rng.integers(20, w - 20)
    d = np.hypot(rr - r, cc - c)
    if kind == 0:
        return d < 5
    if kind == 1:
        return (abs(rr - r) < 2) & (abs(cc - c) < 16)
    if kind == 2:
        m = np.zeros((h, w), bool)
        for _ in range(4):
            m |= np.hypot(rr - r - rng.integers(-8, 9), cc - c - rng.integers(-8, 9)) < 4
        return m
    if kind == 3:
        return (d < 8) & (d > 5)
    if kind == 4:
        return (abs(cc - c) < 2) & (abs(rr - r) < 16)
    return (abs(rr - r) < 6) & (abs(cc - c) < 6)


def make_tiny_dataset(out: Path, n: int = 24, seed: int = 0, size: int = 128, spacing_mm: float = 0.6,
                      n_patients: int | None = None) -> Path:
    """Write ``n`` images and ``out/manifest.csv``; returns the manifest path."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    n_patients = n_patients or max(2, n // 2)
    for i in range(n):
        img = 0.3 + 0.05 * rng.standard_normal((size, size))
        k = int(rng.integers(0, 3))
        kinds = sorted(set(rng.choice(len(PATTERNS), size=k, replace=False).tolist())) if k else []
        lesions = []
        for kind in kinds:
            m = _shape_mask(kind, size, size, rng)
            img[m] += 0.5
            mask_path = out / f"img{i:03d}_{kind}.npz"
            np.savez_compressed(mask_path, mask=m)
            r, c = np.nonzero(m)
            lesions.append({"kind": PATTERNS[kind].value, "bbox_px": [int(r.min()), int(c.min()),
                                                                       int(r.max()) + 1, int(c.max()) + 1],
                            "size_mm": [10.0, 5.0], "location_class": "unknown", "mask": mask_path.name})
        dcm = out / f"img{i:03d}.dcm"
        pid = f"P{i % n_patients:03d}"
        write_dx(dcm, np.clip(img, 0, 1), spacing_mm, pid)
        ann = out / f"img{i:03d}.json"
        ann.write_text(json.dumps({"lesions": lesions}))
        rows.append(ManifestRow(path=dcm, patient_id=pid, labels=frozenset(PATTERNS[k] for k in kinds),
                                annotations=ann))
    return write_manifest(out / "manifest.csv", rows)


def read_back(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path)
