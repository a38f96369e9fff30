"""Orthanc (Debian package) routes a stable study to the calcdx node; SR and overlay come back into the
same study.  Everything runs inside a private network namespace that has only loopback."""

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


def test_orthanc_round_trip_in_a_private_network_namespace(tmp_path: Path) -> None:
    missing = [t for t in ("Orthanc", "storescu", "dciodvfy", "unshare", "ip") if shutil.which(t) is None]
    if missing or os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run as root with Orthanc and dcmtk installed (missing: {missing})")
        pytest.skip("needs root, Orthanc, dcmtk and dicom3tools")
    files = [REPO / "examples" / "img000011.dcm", REPO / "examples" / "img000005.dcm"]
    report_path = tmp_path / "report.json"
    command = (f"ip link set lo up && {sys.executable} {REPO / 'tests' / 'pacs_orthanc_scenario.py'} "
               f"{report_path} {' '.join(map(str, files))}")
    result = subprocess.run(["unshare", "--net", "sh", "-c", command], capture_output=True, text=True, timeout=600)
    assert report_path.exists(), result.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["ok"], report
    assert report["storescu_rc"] == 0, report
    assert set(report["studies"]) == set(report["expected_studies"]), report
    for study in report["studies"].values():
        assert "SR" in study["modalities"] and "OT" in study["modalities"], report
    assert len(report["srs"]) == len(report["expected_studies"]), report
    for sr in report["srs"]:
        assert sr["same_study"]
        assert sr["dciodvfy_errors"] == []
    assert sorted(ref for sr in report["srs"] for ref in sr["references"]) == report["sources"]
