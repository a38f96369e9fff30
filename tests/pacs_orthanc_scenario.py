"""Driver for the Orthanc round trips, run inside a private network namespace (only loopback).

    unshare --net sh -c 'ip link set lo up && python -m tests.pacs_orthanc_scenario MODE OUT_JSON FILE... [--late FILE]'

MODE ``lua``: Orthanc's Lua script routes the stable study to ``calcdx serve dicom``, which
C-STOREs the SR and overlays back.  MODE ``python``: the orthanc-python script asks
``calcdx serve web`` to analyse the study by reference (QIDO/WADO-RS from Orthanc's DICOMweb
plugin, STOW-RS back).  Starts Orthanc (Debian package, generated config), the calcdx side,
sends FILEs with dcmtk's storescu (``-xv``: JPEG 2000 offered), waits until Orthanc holds the SR
and the overlays in the same study, and writes what it saw as JSON.  With ``--late FILE`` (an image of one
of the studies), FILE is sent once those results are back: the study must be analysed again, with every
image.  Everything it starts, it stops.
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
from tests.pacs_fixtures import result_jsons, sr_content


def _count_srs(orthanc: LocalOrthanc) -> dict[str, int]:
    """SR instances per StudyInstanceUID in Orthanc."""
    counts: dict[str, int] = {}
    for uid, study in orthanc.study_modalities().items():
        for inst in orthanc.get(f"/studies/{study['id']}/instances"):
            if orthanc.get(f"/instances/{inst['ID']}/simplified-tags").get("Modality") == "SR":
                counts[uid] = counts.get(uid, 0) + 1
    return counts


def main() -> int:
    mode, out_json, rest = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    late = [Path(p) for p in rest[rest.index("--late") + 1:]] if "--late" in rest else []
    sources = [Path(p) for p in rest[:rest.index("--late")]] if late else [Path(p) for p in rest]
    work = Path(tempfile.mkdtemp(prefix="calcdx-orthanc-"))
    report: dict[str, object] = {"ok": False, "mode": mode}
    try:
        with LocalOrthanc(work, mode=mode, stable_age=1) as orthanc:
            started = time.time()
            sent = orthanc.storescu(sources)
            report["storescu_rc"] = sent.returncode
            report["storescu_err"] = sent.stderr[-2000:]
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
            time.sleep(2 * orthanc.stable_age + 1)  # results make the study stable again: must not loop
            report["srs_before_late"] = _count_srs(orthanc)
            if late:
                report["late_storescu_rc"] = orthanc.storescu(late).returncode
                late_study = str(pydicom.dcmread(late[0], stop_before_pixels=True).StudyInstanceUID)
                before = report["srs_before_late"].get(late_study, 0)
                deadline = time.time() + 240
                while time.time() < deadline and _count_srs(orthanc).get(late_study, 0) <= before:
                    time.sleep(0.5)
                time.sleep(2 * orthanc.stable_age + 1)  # and again: no loop
            srs, overlays = [], []
            for uid, study in orthanc.study_modalities().items():
                for inst in orthanc.get(f"/studies/{study['id']}/instances"):
                    modality = orthanc.get(f"/instances/{inst['ID']}/simplified-tags").get("Modality")
                    if modality not in ("SR", "OT"):
                        continue
                    path = work / f"{inst['ID']}.dcm"
                    path.write_bytes(orthanc.raw(f"/instances/{inst['ID']}/file"))
                    check = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
                    errors = [ln for ln in (check.stdout + check.stderr).splitlines() if ln.startswith("Error")]
                    if modality == "SR":
                        srs.append({**sr_content(path), "orthanc_study": uid, "dciodvfy_errors": errors})
                    else:
                        ds = pydicom.dcmread(path, stop_before_pixels=True)
                        overlays.append({"orthanc_study": uid, "study": str(ds.StudyInstanceUID),
                                         "source": str(ds.SourceImageSequence[0].ReferencedSOPInstanceUID),
                                         "dciodvfy_errors": errors})
            report["srs"] = srs
            report["overlays"] = overlays
            report["results"] = [{"study": r["study_instance_uid"],
                                  "images": sorted(i["sop_instance_uid"] for i in r["images"]),
                                  "findings": sum(len(i["findings"]) for i in r["images"])}
                                 for r in result_jsons(work)]
            report["sources"] = sorted(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                                       for p in [*sources, *late])
            report["ok"] = True
    except Exception as exc:
        report["exception"] = f"{type(exc).__name__}: {exc}"
    finally:
        for log in ("orthanc.log", "calcdx.log"):
            if (work / log).exists():
                report[f"{log}_tail"] = (work / log).read_text(errors="replace")[-3000:]
        out_json.write_text(json.dumps(report, indent=1))
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
