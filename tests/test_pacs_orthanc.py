"""Orthanc (Debian package) sends a stable study to calcdx; the SR and overlays come back into the same
study.  Two ways: Lua routing to the DICOM node, and the orthanc-python script asking the DICOMweb
service to analyse the study by reference.  Everything runs inside a private network namespace that
has only loopback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

pytestmark = [pytest.mark.pacs, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
FILES = [REPO / "examples" / "img000011.dcm", REPO / "examples" / "img000005.dcm"]


def _late_image(tmp_path: Path) -> Path:
    """Another radiograph of the first file's study, sent once that study's results are back."""
    source = pydicom.dcmread(FILES[0], stop_before_pixels=True)
    late = pydicom.dcmread(REPO / "examples" / "img000004.dcm")
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "AccessionNumber"):
        setattr(late, keyword, source.get(keyword))
    late.SOPInstanceUID = late.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = tmp_path / "late.dcm"
    late.save_as(path, enforce_file_format=True)
    return path


def run_scenario(mode: str, tmp_path: Path, late: Path | None = None) -> dict:
    missing = [t for t in ("Orthanc", "storescu", "dciodvfy", "unshare", "ip") if shutil.which(t) is None]
    if mode == "python" and not Path("/usr/share/orthanc/plugins/libOrthancPython.so").exists():
        missing.append("orthanc-python")
    if missing or os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run as root with Orthanc and dcmtk installed (missing: {missing})")
        pytest.skip(f"needs root, Orthanc, dcmtk and dicom3tools (missing: {missing})")
    report_path = tmp_path / "report.json"
    extra = f" --late {late}" if late else ""
    command = (f"ip link set lo up && {sys.executable} -m tests.pacs_orthanc_scenario {mode} {report_path} "
               f"{' '.join(map(str, FILES))}{extra}")
    result = subprocess.run(["unshare", "--net", "sh", "-c", command], capture_output=True, text=True,
                            timeout=600, cwd=REPO)
    assert report_path.exists(), result.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["ok"], report
    return report


@pytest.mark.parametrize("mode", ["lua", "python"])
def test_orthanc_round_trip_in_a_private_network_namespace(mode: str, tmp_path: Path) -> None:
    """Then an image of the first study arrives late: Orthanc sends the study again (it holds more
    radiographs than it sent), and calcdx's new SR covers both images.  calcdx's own results stored back never
    trigger an analysis (before, the scripts skipped every study that held them, late images included)."""
    late = _late_image(tmp_path)
    report = run_scenario(mode, tmp_path, late)
    assert report["storescu_rc"] == 0 and report["late_storescu_rc"] == 0, report
    assert set(report["studies"]) == set(report["expected_studies"]), report
    for study in report["studies"].values():
        assert "SR" in study["modalities"] and "OT" in study["modalities"], report
    # one SR per study before the late image: the results coming back must not trigger a second analysis
    assert report["srs_before_late"] == dict.fromkeys(report["expected_studies"], 1), report
    late_study = str(pydicom.dcmread(late, stop_before_pixels=True).StudyInstanceUID)
    expected_srs = sorted([*report["expected_studies"], late_study])
    assert sorted(sr["orthanc_study"] for sr in report["srs"]) == expected_srs, report  # and no loop after it
    first, late_sop = (str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in (FILES[0], late))
    assert any(sr["evidence"] == sorted([first, late_sop]) for sr in report["srs"]), report
    for sr in report["srs"]:
        assert sr["study"] == sr["orthanc_study"]
        assert sr["dciodvfy_errors"] == [], sr
        assert "calcdx" in sr["series_description"]
        for group in sr["groups"]:
            assert group["finding_code"], group
            assert {"Calibrated probability", "Long Axis", "Short Axis", "Area"} <= set(group["measurements"]), group
            assert set(group["region_refs"]) <= set(sr["evidence"]), group
        # TID 1500 content read back with highdicom: one measurement group per finding of its result
        results = [r for r in report["results"] if r["study"] == sr["study"] and r["images"] == sr["evidence"]]
        if results or len(sr["evidence"]) == 2:  # the node keeps a study's latest result only
            assert results and len(sr["groups"]) == results[0]["findings"], (sr, report["results"])
    assert sum(r["findings"] for r in report["results"]) > 0, report
    assert sorted({ref for sr in report["srs"] for ref in sr["evidence"]}) == report["sources"]
    # one overlay per image; the first image's comes again with the same UIDs, so Orthanc keeps one
    assert sorted(overlay["source"] for overlay in report["overlays"]) == report["sources"], report
    for overlay in report["overlays"]:
        assert overlay["study"] == overlay["orthanc_study"]
        assert overlay["dciodvfy_errors"] == [], overlay
