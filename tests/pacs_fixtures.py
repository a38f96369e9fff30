"""Helpers shared by the PACS tests and scenario drivers (imported explicitly, not a conftest)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def small_instances(folder: Path, n_studies: int, per_study: int, size: int = 256,
                    source: Path = EXAMPLES / "img000010.dcm") -> dict[str, list[Path]]:
    """``n_studies`` studies of ``per_study`` small uncompressed radiographs (crops of a simulated example,
    each shifted so no two instances share pixels); {StudyInstanceUID: [paths]}."""
    folder.mkdir(parents=True, exist_ok=True)
    base = pydicom.dcmread(source)
    pixels = base.pixel_array
    rows, cols = pixels.shape
    out: dict[str, list[Path]] = {}
    k = 0
    for s in range(n_studies):
        study_uid = generate_uid()
        series_uid = generate_uid()
        out[study_uid] = []
        for i in range(per_study):
            r0 = (k * 37) % max(1, rows - size)
            c0 = (k * 53) % max(1, cols - size)
            k += 1
            ds = pydicom.dcmread(source, stop_before_pixels=True)
            crop = np.ascontiguousarray(pixels[r0:r0 + size, c0:c0 + size]).astype(pixels.dtype)
            ds.Rows, ds.Columns = crop.shape
            ds.PixelData = crop.tobytes()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.InstanceNumber = i + 1
            ds.AccessionNumber = f"A{s:04d}"
            path = folder / f"s{s:03d}_i{i:03d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            out[study_uid].append(path)
    return out


def sr_content(path: Path) -> dict[str, Any]:
    """What a calcdx SR says, read back with highdicom: groups, codes, measurements, references."""
    import highdicom as hd

    sr = hd.sr.srread(path)
    groups = sr.content.get_planar_roi_measurement_groups()
    evidence = sorted(i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                      for se in s.ReferencedSeriesSequence for i in se.ReferencedSOPSequence)
    return {
        "study": str(sr.StudyInstanceUID),
        "sop": str(sr.SOPInstanceUID),
        "series_description": str(sr.get("SeriesDescription", "")),
        "evidence": evidence,
        "groups": [{
            "finding_code": g.finding_type.value,
            "measurements": sorted(m.name.meaning for m in g.get_measurements()),
            "region_refs": [str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
                            for item in g.roi.ContentSequence if "ReferencedSOPSequence" in item],
        } for g in groups],
    }


def result_jsons(root: Path) -> dict[str, dict[str, Any]]:
    """calcdx result JSONs found under ``root``: {StudyInstanceUID: result}."""
    out = {}
    for path in root.rglob("*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "study_instance_uid" in data and "images" in data:
            out[data["study_instance_uid"]] = data
    return out
