"""Orthanc integration: configuration files for both ways, and a local Orthanc wired to calcdx.

Two ways to connect Orthanc (Debian packages ``orthanc``, ``orthanc-gdcm``, and for the second
``orthanc-python`` + ``orthanc-dicomweb``):

- ``lua``: Orthanc's Lua script routes every stable study to the calcdx DICOM node
  (``calcdx serve dicom``), which C-STOREs the SR and overlays back.
- ``python``: the orthanc-python script asks the calcdx web service (``calcdx serve web``) to
  analyse the stable study by reference; calcdx pulls it over DICOMweb and STOW-RSes the results back.

``LocalOrthanc`` runs Orthanc and the calcdx side on loopback for tests, benchmarks and trying it out.
Orthanc 1.10 listens on every interface: run it inside a private network namespace
(``unshare --net`` then ``ip link set lo up``) unless the machine is otherwise isolated.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from calcdx.errors import ConfigError

PLUGIN_DIR = "/usr/share/orthanc/plugins"
GDCM_PLUGIN = f"{PLUGIN_DIR}/libOrthancGdcm.so"
PYTHON_PLUGIN = f"{PLUGIN_DIR}/libOrthancPython.so"
DICOMWEB_PLUGIN = f"{PLUGIN_DIR}/libOrthancDicomWeb.so"
LUA_SCRIPT = "orthanc_route.lua"
PYTHON_SCRIPT = "calcdx_orthanc_plugin.py"
MODES = ("lua", "python")
ROUTED_METADATA = "CalcdxRadiographs"
ROUTED_METADATA_INDEX = 4201
"""Orthanc user metadata (index 1024-65535) in which both scripts keep the radiographs sent per study."""


def wait_port(port: int, timeout: float = 180) -> None:
    """Block until something accepts TCP connections on 127.0.0.1:``port``.  Raises TimeoutError."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def packaged(name: str) -> str:
    """Text of a data file shipped in ``calcdx.inference.pacs`` (Lua script, plugin script, template)."""
    return files("calcdx.inference.pacs").joinpath(name).read_text(encoding="utf-8")


def orthanc_config(mode: str, folder: Path, *, http_port: int = 8042, dicom_port: int = 4242,
                   calcdx_aet: str = "CALCDX", calcdx_host: str = "127.0.0.1", calcdx_port: int = 11112,
                   calcdx_url: str = "http://127.0.0.1:8000", token_file: str | None = None,
                   stable_age: int = 2, storage: str | None = None) -> dict[str, Any]:
    """Orthanc's configuration for ``mode`` (``lua`` or ``python``), scripts expected in ``folder``.

    Raises:
        ConfigError: unknown mode.
    """
    if mode not in MODES:
        raise ConfigError(f'Argument "mode" should be one of {MODES}, got {mode!r}')
    template = (packaged("orthanc_config.json").replace("@HTTP_PORT@", str(http_port))
                .replace("@DICOM_PORT@", str(dicom_port)).replace("@CALCDX_PORT@", str(calcdx_port)))
    config: dict[str, Any] = json.loads(template)
    storage = storage or "/var/lib/orthanc/db"
    config.update(StorageDirectory=storage, IndexDirectory=storage, StableAge=stable_age)
    # how many radiographs of a study were sent to calcdx: a late image sends the study again (the scripts)
    config["UserMetadata"] = {ROUTED_METADATA: ROUTED_METADATA_INDEX}
    config["DicomModalities"] = {"calcdx": [calcdx_aet, calcdx_host, calcdx_port]}
    if mode == "lua":
        config.update(Plugins=[GDCM_PLUGIN], LuaScripts=[str(folder / LUA_SCRIPT)])
    else:
        config.pop("LuaScripts", None)
        config.update(Plugins=[GDCM_PLUGIN, DICOMWEB_PLUGIN, PYTHON_PLUGIN], PythonScript=str(folder / PYTHON_SCRIPT),
                      DicomWeb={"Enable": True, "Root": "/dicom-web/"},
                      Calcdx={"Url": calcdx_url, "TokenFile": token_file or str(folder / "calcdx.token"),
                              "DicomWebUrl": f"http://127.0.0.1:{http_port}/dicom-web",
                              "Modalities": ["CR", "DX"]})
    return config


def write_bundle(mode: str, folder: Path, **kwargs: Any) -> Path:
    """Write ``orthanc.json`` and the script of ``mode`` into ``folder``; returns the config path."""
    folder.mkdir(parents=True, exist_ok=True)
    config = orthanc_config(mode, folder, **kwargs)
    script = LUA_SCRIPT if mode == "lua" else PYTHON_SCRIPT
    (folder / script).write_text(packaged(script), encoding="utf-8")
    path = folder / "orthanc.json"
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return path


@dataclass
class LocalOrthanc:
    """Orthanc + the calcdx side (node for ``lua``, web service for ``python``) on loopback, in ``work``."""

    work: Path
    mode: str = "lua"
    http_port: int = 18042
    dicom_port: int = 14242
    node_port: int = 11112
    web_port: int = 18000
    stable_age: int = 2
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    token: str = field(default_factory=lambda: secrets.token_hex(16))

    def write_configs(self) -> tuple[Path, Path]:
        """Orthanc's config and calcdx's (node or web) YAML."""
        token_file = self.work / "calcdx.token"
        token_file.write_text(self.token)
        os.chmod(token_file, 0o600)
        orthanc_json = write_bundle(self.mode, self.work / "orthanc", http_port=self.http_port,
                                    dicom_port=self.dicom_port, calcdx_port=self.node_port,
                                    calcdx_url=f"http://127.0.0.1:{self.web_port}", token_file=str(token_file),
                                    stable_age=self.stable_age, storage=str(self.work / "db"))
        calcdx_yaml = self.work / "calcdx.yaml"
        if self.mode == "lua":
            calcdx_yaml.write_text(
                f"ae_title: CALCDX\nport: {self.node_port}\nallowed: [ORTHANC@127.0.0.1]\n"
                f"destination: ORTHANC@127.0.0.1:{self.dicom_port}\nspool_dir: {self.work / 'spool'}\n"
                f"out_dir: {self.work / 'out'}\nstudy_idle_seconds: 0.5\n")
        else:
            calcdx_yaml.write_text(
                f"port: {self.web_port}\ntoken_file: {token_file}\nwork_dir: {self.work / 'web'}\n"
                f"dicomweb_sources: ['http://127.0.0.1:{self.http_port}/dicom-web']\n")
        return orthanc_json, calcdx_yaml

    def __enter__(self) -> LocalOrthanc:
        self.work.mkdir(parents=True, exist_ok=True)
        orthanc_json, calcdx_yaml = self.write_configs()
        calcdx = str(Path(sys.executable).with_name("calcdx"))
        front_end = "dicom" if self.mode == "lua" else "web"
        with open(self.work / "orthanc.log", "wb") as olog, open(self.work / "calcdx.log", "wb") as clog:
            self.procs.append(subprocess.Popen(["Orthanc", str(orthanc_json)], stdout=olog, stderr=subprocess.STDOUT))
            self.procs.append(subprocess.Popen([calcdx, "serve", front_end, "--config", str(calcdx_yaml)],
                                               stdout=clog, stderr=subprocess.STDOUT))
        try:
            self.wait_http()
            wait_port(self.node_port if self.mode == "lua" else self.web_port)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as response:
            return json.loads(response.read())

    def raw(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=30) as response:
            return bytes(response.read())

    def wait_http(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                self.get("/system")
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("Orthanc did not answer")

    def storescu(self, paths: list[Path], *, lossless: bool = True) -> subprocess.CompletedProcess[str]:
        """Send ``paths`` to Orthanc with dcmtk's storescu (``-xv``: also offer JPEG 2000 lossless)."""
        return subprocess.run(["storescu", "-xv" if lossless else "-xw", "-aet", "SENDER", "-aec", "ORTHANC",
                               "127.0.0.1", str(self.dicom_port), *map(str, paths)],
                              capture_output=True, text=True, timeout=300)

    def study_modalities(self) -> dict[str, dict[str, Any]]:
        """{StudyInstanceUID: {"id": orthanc id, "modalities": [...]}}."""
        out = {}
        for sid in self.get("/studies"):
            info = self.get(f"/studies/{sid}")
            modalities = [self.get(f"/series/{s}")["MainDicomTags"].get("Modality") for s in info["Series"]]
            out[info["MainDicomTags"]["StudyInstanceUID"]] = {"id": sid, "modalities": modalities}
        return out
