"""Run a local Orthanc (Debian package) wired to a calcdx DICOM node: config, start/stop, REST helpers.

Used by the integration test and the latency benchmark, and handy to try the integration by
hand.  Orthanc 1.10 listens on every interface: run this inside a private network namespace
(``unshare --net`` then ``ip link set lo up``) unless the machine is otherwise isolated.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

GDCM_PLUGIN = "/usr/share/orthanc/plugins/libOrthancGdcm.so"


def wait_port(port: int, timeout: float = 180) -> None:
    """Block until something accepts TCP connections on 127.0.0.1:``port``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@dataclass
class LocalOrthanc:
    """Orthanc + calcdx node in ``work`` (ports on loopback); use as a context manager."""

    work: Path
    http_port: int = 18042
    dicom_port: int = 14242
    node_port: int = 11112
    stable_age: int = 2
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def write_configs(self) -> tuple[Path, Path]:
        pacs = files("calcdx.inference.pacs")
        lua = self.work / "route.lua"
        lua.write_text(pacs.joinpath("orthanc_route.lua").read_text())
        config = json.loads(pacs.joinpath("orthanc_config.json").read_text()
                            .replace("@HTTP_PORT@", str(self.http_port)).replace("@DICOM_PORT@", str(self.dicom_port))
                            .replace("@CALCDX_PORT@", str(self.node_port)))
        config.update(StorageDirectory=str(self.work / "db"), IndexDirectory=str(self.work / "db"),
                      Plugins=[GDCM_PLUGIN], LuaScripts=[str(lua)], StableAge=self.stable_age)
        orthanc_json = self.work / "orthanc.json"
        orthanc_json.write_text(json.dumps(config, indent=1))
        node_yaml = self.work / "node.yaml"
        node_yaml.write_text(f"ae_title: CALCDX\nport: {self.node_port}\nallowed: [ORTHANC@127.0.0.1]\n"
                             f"destination: ORTHANC@127.0.0.1:{self.dicom_port}\nspool_dir: {self.work / 'spool'}\n"
                             f"out_dir: {self.work / 'out'}\nstudy_idle_seconds: 0.5\n")
        return orthanc_json, node_yaml

    def __enter__(self) -> LocalOrthanc:
        self.work.mkdir(parents=True, exist_ok=True)
        orthanc_json, node_yaml = self.write_configs()
        calcdx = str(Path(sys.executable).with_name("calcdx"))
        with open(self.work / "orthanc.log", "wb") as olog, open(self.work / "node.log", "wb") as nlog:
            self.procs.append(subprocess.Popen(["Orthanc", str(orthanc_json)], stdout=olog, stderr=subprocess.STDOUT))
            self.procs.append(subprocess.Popen([calcdx, "serve", "dicom", "--config", str(node_yaml)], stdout=nlog,
                                               stderr=subprocess.STDOUT))
        self.wait_http()
        wait_port(self.node_port)
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as response:
            return json.loads(response.read())

    def raw(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=30) as response:
            return response.read()

    def wait_http(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                self.get("/system")
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("Orthanc did not answer")

    def storescu(self, paths: list[Path]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["storescu", "-xv", "-aet", "SENDER", "-aec", "ORTHANC", "127.0.0.1",
                               str(self.dicom_port), *map(str, paths)], capture_output=True, text=True, timeout=300)

    def study_modalities(self) -> dict[str, dict[str, Any]]:
        """{StudyInstanceUID: {"id": orthanc id, "modalities": [...]}}."""
        out = {}
        for sid in self.get("/studies"):
            info = self.get(f"/studies/{sid}")
            modalities = [self.get(f"/series/{s}")["MainDicomTags"].get("Modality") for s in info["Series"]]
            out[info["MainDicomTags"]["StudyInstanceUID"]] = {"id": sid, "modalities": modalities}
        return out
