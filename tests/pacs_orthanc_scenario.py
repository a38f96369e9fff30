"""Driver for the Orthanc round trip, run inside a private network namespace (only loopback).

    unshare --net sh -c 'ip link set lo up && python tests/pacs_orthanc_scenario.py OUT_JSON FILE...'

Starts Orthanc (Debian package, generated config, GDCM plugin, calcdx's Lua routing script) and
the calcdx DICOM node, sends FILEs to Orthanc with dcmtk's storescu, waits until Orthanc holds
calcdx's SR and overlay in the same study, and writes what it saw as JSON.  Everything it
starts, it stops.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from importlib.resources import files
from pathlib import Path

import pydicom

HTTP, DICOM, NODE = 18042, 14242, 11112
CALCDX = str(Path(sys.executable).with_name("calcdx"))


def get(path: str) -> object:
    with urllib.request.urlopen(f"http://127.0.0.1:{HTTP}{path}", timeout=10) as response:
        return json.loads(response.read())


def raw(path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{HTTP}{path}", timeout=30) as response:
        return response.read()


def wait_http(timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            get("/system")
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError("Orthanc did not answer")


def wait_port(port: int, timeout: float = 180) -> None:
    import socket

    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"the calcdx node did not listen on {port}")


def main() -> int:
    out_json, sources = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
    work = Path(tempfile.mkdtemp(prefix="calcdx-orthanc-"))
    pacs = files("calcdx.inference.pacs")
    lua = work / "route.lua"
    lua.write_text(pacs.joinpath("orthanc_route.lua").read_text())
    config = (pacs.joinpath("orthanc_config.json").read_text()
              .replace("@STORAGE@", str(work / "db")).replace("@HTTP_PORT@", str(HTTP))
              .replace("@DICOM_PORT@", str(DICOM)).replace("@CALCDX_PORT@", str(NODE))
              .replace("@LUA@", str(lua)).replace("@PLUGINS@", "/usr/share/orthanc/plugins/libOrthancGdcm.so"))
    (work / "orthanc.json").write_text(config)
    node_cfg = work / "node.yaml"
    node_cfg.write_text(f"ae_title: CALCDX\nport: {NODE}\nallowed: [ORTHANC@127.0.0.1]\n"
                        f"destination: ORTHANC@127.0.0.1:{DICOM}\nspool_dir: {work / 'spool'}\n"
                        f"out_dir: {work / 'out'}\nstudy_idle_seconds: 1.0\n")
    orthanc = subprocess.Popen(["Orthanc", str(work / "orthanc.json")], stdout=open(work / "orthanc.log", "w"),  # noqa: SIM115 (open for the process lifetime)
                               stderr=subprocess.STDOUT)
    node = subprocess.Popen([CALCDX, "serve", "dicom", "--config", str(node_cfg)],
                            stdout=open(work / "node.log", "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
    report: dict[str, object] = {"ok": False}
    try:
        wait_http()
        wait_port(NODE)
        started = time.time()
        send = subprocess.run(["storescu", "-xv", "-aet", "SENDER", "-aec", "ORTHANC", "127.0.0.1", str(DICOM),
                               *map(str, sources)], capture_output=True, text=True, timeout=120)
        report["storescu_rc"] = send.returncode
        expected_studies = {str(pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in sources}
        deadline = time.time() + 240
        studies: dict[str, dict[str, object]] = {}
        while time.time() < deadline:
            studies = {}
            for sid in get("/studies"):
                info = get(f"/studies/{sid}")
                uid = info["MainDicomTags"]["StudyInstanceUID"]
                modalities = [get(f"/series/{s}")["MainDicomTags"].get("Modality") for s in info["Series"]]
                studies[uid] = {"id": sid, "modalities": modalities}
            if len(studies) == len(expected_studies) and all(
                    "SR" in s["modalities"] and "OT" in s["modalities"] for s in studies.values()):
                break
            time.sleep(1)
        report["seconds"] = time.time() - started
        report["studies"] = studies
        report["expected_studies"] = sorted(expected_studies)
        srs = []
        for uid, study in studies.items():
            for inst in get(f"/studies/{study['id']}/instances"):
                tags = get(f"/instances/{inst['ID']}/simplified-tags")
                if tags.get("Modality") == "SR":
                    path = work / f"{inst['ID']}.dcm"
                    path.write_bytes(raw(f"/instances/{inst['ID']}/file"))
                    ds = pydicom.dcmread(path)
                    refs = sorted(i.ReferencedSOPInstanceUID for s in ds.CurrentRequestedProcedureEvidenceSequence
                                  for se in s.ReferencedSeriesSequence for i in se.ReferencedSOPSequence)
                    check = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
                    errors = [ln for ln in (check.stdout + check.stderr).splitlines() if ln.startswith("Error")]
                    srs.append({"study": uid, "same_study": ds.StudyInstanceUID == uid, "references": refs,
                                "dciodvfy_errors": errors})
        report["srs"] = srs
        report["sources"] = sorted(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in sources)
        report["ok"] = True
    finally:
        for proc in (node, orthanc):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        report["orthanc_log_tail"] = (work / "orthanc.log").read_text()[-2000:]
        report["node_log_tail"] = (work / "node.log").read_text()[-2000:]
        out_json.write_text(json.dumps(report, indent=1))
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
