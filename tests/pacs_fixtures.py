"""Helpers shared by the PACS tests and scenario drivers (imported explicitly, not a conftest)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pydicom
from pydicom.uid import generate_uid

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def relabelled_instances(folder: Path, n_studies: int, per_study: int) -> dict[str, list[Path]]:
    """``n_studies`` studies of ``per_study`` radiographs: the bundled examples (full size, JPEG 2000 as
    shipped, cycling through every region) under new Study, Series and SOP Instance UIDs;
    {StudyInstanceUID: [paths]}."""
    folder.mkdir(parents=True, exist_ok=True)
    examples = sorted(EXAMPLES.glob("*.dcm"))
    out: dict[str, list[Path]] = {}
    k = 0
    for s in range(n_studies):
        study_uid, series_uid = generate_uid(), generate_uid()
        out[study_uid] = []
        for i in range(per_study):
            ds = pydicom.dcmread(examples[k % len(examples)])
            k += 1
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


def result_jsons(root: Path) -> list[dict[str, Any]]:
    """Every calcdx result JSON found under ``root`` (one study may have several: one per job)."""
    out = []
    for path in sorted(root.rglob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "study_instance_uid" in data and "images" in data:
            out.append(data)
    return out
