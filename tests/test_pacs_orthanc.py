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

import pytest

pytestmark = [pytest.mark.pacs, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
FILES = [REPO / "examples" / "img000011.dcm", REPO / "examples" / "img000005.dcm"]


def run_scenario(mode: str, tmp_path: Path) -> dict:
    missing = [t for t in ("Orthanc", "storescu", "dciodvfy", "unshare", "ip") if shutil.which(t) is None]
    if mode == "python" and not Path("/usr/share/orthanc/plugins/libOrthancPython.so").exists():
        missing.append("orthanc-python")
    if missing or os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run as root with Orthanc and dcmtk installed (missing: {missing})")
        pytest.skip(f"needs root, Orthanc, dcmtk and dicom3tools (missing: {missing})")
    report_path = tmp_path / "report.json"
    command = (f"ip link set lo up && {sys.executable} -m tests.pacs_orthanc_scenario {mode} {report_path} "
               f"{' '.join(map(str, FILES))}")
    result = subprocess.run(["unshare", "--net", "sh", "-c", command], capture_output=True, text=True,
                            timeout=600, cwd=REPO)
    assert report_path.exists(), result.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["ok"], report
    return report


@pytest.mark.parametrize("mode", ["lua", "python"])
def test_orthanc_round_trip_in_a_private_network_namespace(mode: str, tmp_path: Path) -> None:
    report = run_scenario(mode, tmp_path)
    assert report["storescu_rc"] == 0, report
    assert set(report["studies"]) == set(report["expected_studies"]), report
    for study in report["studies"].values():
        assert "SR" in study["modalities"] and "OT" in study["modalities"], report
    # exactly one SR per study: the results coming back must not trigger a second analysis
    assert sorted(sr["orthanc_study"] for sr in report["srs"]) == sorted(report["expected_studies"]), report
    for sr in report["srs"]:
        assert sr["study"] == sr["orthanc_study"]
        assert sr["dciodvfy_errors"] == [], sr
        assert "calcdx" in sr["series_description"]
        result = report["results"][sr["study"]]
        # TID 1500 content read back with highdicom: one measurement group per finding
        assert len(sr["groups"]) == result["findings"], (sr, result)
        for group in sr["groups"]:
            assert group["finding_code"], group
            assert {"Calibrated probability", "Long Axis", "Short Axis", "Area"} <= set(group["measurements"]), group
            assert set(group["region_refs"]) <= set(report["sources"]), group
    assert sum(result["findings"] for result in report["results"].values()) > 0, report
    assert sorted(ref for sr in report["srs"] for ref in sr["evidence"]) == report["sources"]
    assert len(report["overlays"]) == len(report["sources"]), report
    for overlay in report["overlays"]:
        assert overlay["study"] == overlay["orthanc_study"]
        assert overlay["source"] in report["sources"]
        assert overlay["dciodvfy_errors"] == [], overlay
