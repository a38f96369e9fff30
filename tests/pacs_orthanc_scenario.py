"""Driver for the Orthanc round trip, run inside a private network namespace (only loopback).

    unshare --net sh -c 'ip link set lo up && python tests/pacs_orthanc_scenario.py OUT_JSON FILE...'

Starts Orthanc (Debian package, generated config, GDCM plugin, calcdx's Lua routing script) and the
calcdx DICOM node, sends FILEs to Orthanc with dcmtk's storescu, waits until Orthanc holds calcdx's
SR and overlay in the same study, and writes what it saw as JSON.  Everything it starts, it stops.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom

from calcdx.inference.pacs.orthanc import LocalOrthanc


def main() -> int:
    out_json, sources = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
    work = Path(tempfile.mkdtemp(prefix="calcdx-orthanc-"))
    report: dict[str, object] = {"ok": False}
    try:
        with LocalOrthanc(work) as orthanc:
            started = time.time()
            report["storescu_rc"] = orthanc.storescu(sources).returncode
            expected = {str(pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in sources}
            deadline = time.time() + 240
            studies: dict[str, dict[str, object]] = {}
            while time.time() < deadline:
                studies = orthanc.study_modalities()
                if len(studies) == len(expected) and all(
                        "SR" in s["modalities"] and "OT" in s["modalities"] for s in studies.values()):
                    break
                time.sleep(0.5)
            report.update(seconds=time.time() - started, studies=studies, expected_studies=sorted(expected))
            srs = []
            for uid, study in studies.items():
                for inst in orthanc.get(f"/studies/{study['id']}/instances"):
                    if orthanc.get(f"/instances/{inst['ID']}/simplified-tags").get("Modality") != "SR":
                        continue
                    path = work / f"{inst['ID']}.dcm"
                    path.write_bytes(orthanc.raw(f"/instances/{inst['ID']}/file"))
                    ds = pydicom.dcmread(path)
                    refs = sorted(i.ReferencedSOPInstanceUID for s in ds.CurrentRequestedProcedureEvidenceSequence
                                  for se in s.ReferencedSeriesSequence for i in se.ReferencedSOPSequence)
                    check = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
                    errors = [ln for ln in (check.stdout + check.stderr).splitlines() if ln.startswith("Error")]
                    srs.append({"study": uid, "same_study": ds.StudyInstanceUID == uid, "references": refs,
                                "dciodvfy_errors": errors})
            report["srs"] = srs
            report["sources"] = sorted(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                                       for p in sources)
            report["ok"] = True
    finally:
        for log in ("orthanc.log", "node.log"):
            if (work / log).exists():
                report[f"{log}_tail"] = (work / log).read_text(errors="replace")[-2000:]
        out_json.write_text(json.dumps(report, indent=1))
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
