"""The DICOM node against real dcmtk tools on loopback: storescu in, SR and overlay out to storescp."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import ComputedRadiographyImageStorage

from calcdx.inference.pacs import NodeConfig, Spool
from calcdx.inference.pacs.orthanc import wait_port
from tests.tools import dciodvfy_errors, require_tool

pytestmark = pytest.mark.pacs

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
CALCDX = str(Path(sys.executable).with_name("calcdx"))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_site(tmp_path: Path, extra_config: str = ""):  # type: ignore[no-untyped-def]
    """A dcmtk storescp as the PACS destination and a calcdx node, both on loopback; stopped after the test."""
    received = tmp_path / "pacs"
    received.mkdir()
    pacs_port, node_port = _port(), _port()
    bind = ["--bind", "127.0.0.1"] if _supports_bind() else []
    storescp = subprocess.Popen([require_tool("storescp"), "--aetitle", "PACS", "--output-directory", str(received),
                                 *bind, str(pacs_port)])
    config = tmp_path / "node.yaml"
    config.write_text(
        f"ae_title: CALCDX\nhost: 127.0.0.1\nport: {node_port}\nallowed: [SENDER@127.0.0.1]\n"
        f"destination: PACS@127.0.0.1:{pacs_port}\nspool_dir: {tmp_path / 'spool'}\nout_dir: {tmp_path / 'out'}\n"
        "study_idle_seconds: 1.0\nsend_backoff_seconds: 0.2\n" + extra_config)
    node = subprocess.Popen([CALCDX, "serve", "dicom", "--config", str(config)], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_port(pacs_port)
    wait_port(node_port, timeout=120)
    site = {"received": received, "node_port": node_port, "node": node, "config": config, "tmp": tmp_path}
    yield site
    for proc in (site["node"], storescp):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM) if proc is site["node"] else proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture
def peers(tmp_path: Path):  # type: ignore[no-untyped-def]
    yield from _start_site(tmp_path)


def _openssl(*args: str) -> None:
    subprocess.run([require_tool("openssl"), *args], check=True, capture_output=True)


def _certificates(folder: Path) -> dict[str, Path]:
    """A private CA, a server certificate for 127.0.0.1 and a client certificate, all signed by that CA."""
    folder.mkdir()
    ca_key, ca_crt = folder / "ca.key", folder / "ca.crt"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_crt),
             "-days", "2", "-subj", "/CN=calcdx test CA")
    paths = {"ca": ca_crt}
    extensions = {"server": "subjectAltName=IP:127.0.0.1,DNS:localhost", "client": "extendedKeyUsage=clientAuth"}
    for name, extension in extensions.items():
        key, csr, crt = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.crt"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
        ext = folder / f"{name}.ext"
        ext.write_text(extension + "\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
                 "-out", str(crt), "-days", "2", "-extfile", str(ext))
        paths[f"{name}_key"], paths[f"{name}_crt"] = key, crt
    return paths


@pytest.fixture
def tls_peers(tmp_path: Path):  # type: ignore[no-untyped-def]
    certs = _certificates(tmp_path / "certs")
    extra = f"tls_cert: {certs['server_crt']}\ntls_key: {certs['server_key']}\ntls_ca: {certs['ca']}\n"
    for site in _start_site(tmp_path, extra):
        site["certs"] = certs
        yield site


def _supports_bind() -> bool:
    help_text = subprocess.run([require_tool("storescp"), "--help"], capture_output=True, text=True).stdout
    return "--bind" in help_text


def _storescu(port: int, files: list[Path], aet: str = "SENDER") -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("storescu"), "-xv", "-aet", aet, "-aec", "CALCDX", "127.0.0.1", str(port),
                           *map(str, files)], capture_output=True, text=True, timeout=120)


def _wait_for(folder: Path, pattern: str, n: int, timeout: float = 180) -> list[Path]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = sorted(folder.glob(pattern))
        if len(found) >= n:
            return found
        time.sleep(0.5)
    raise TimeoutError(f"{n} x {pattern} not received in {folder}: {sorted(p.name for p in folder.iterdir())}")


def test_storescu_in_sr_and_overlay_back_out(peers: dict) -> None:
    files = [EXAMPLES / "img000011.dcm"]
    result = _storescu(peers["node_port"], files)
    assert result.returncode == 0, result.stderr
    srs = _wait_for(peers["received"], "SR*", 1)
    _wait_for(peers["received"], "SC*", 1)
    sr = hd.sr.srread(srs[0])
    source = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert sr.StudyInstanceUID == source.StudyInstanceUID
    evidence = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for se in s.ReferencedSeriesSequence for i in se.ReferencedSOPSequence}
    assert source.SOPInstanceUID in evidence
    assert dciodvfy_errors(srs[0]) == []


def test_a_late_image_joins_its_study_and_calcdx_results_sent_back_are_passed_over(peers: dict) -> None:
    """A PACS that routes a whole study sends calcdx's own SR and overlay back: they are accepted and not
    analysed (before, they made an empty batch whose JSON replaced the study's).  An image that arrives after
    its study was analysed is analysed with the images before it: one JSON and a new SR for all of them."""
    first = EXAMPLES / "img000010.dcm"
    source = pydicom.dcmread(first, stop_before_pixels=True)
    late = pydicom.dcmread(EXAMPLES / "img000004.dcm")
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "AccessionNumber"):
        setattr(late, keyword, source.get(keyword))
    late.SOPInstanceUID = late.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    late_path = peers["tmp"] / "late.dcm"
    late.save_as(late_path, enforce_file_format=True)
    study_json = peers["tmp"] / "out" / source.StudyInstanceUID / f"{source.StudyInstanceUID}.json"

    assert _storescu(peers["node_port"], [first]).returncode == 0
    (sr,) = _wait_for(peers["received"], "SR*", 1)
    outputs = [sr, *_wait_for(peers["received"], "SC*", 1)]
    _wait_for(study_json.parent, study_json.name, 1)
    analysed = study_json.read_text()
    echoed = subprocess.run([require_tool("storescu"), "-R", "-aet", "SENDER", "-aec", "CALCDX", "127.0.0.1",
                             str(peers["node_port"]), *map(str, outputs)], capture_output=True, text=True, timeout=120)
    assert echoed.returncode == 0, echoed.stderr  # accepted: a PACS must not queue retries for them
    time.sleep(4)  # more than the idle time and an analysis
    assert study_json.read_text() == analysed
    assert not list((peers["tmp"] / "spool" / "incoming").iterdir())
    assert len(list(peers["received"].glob("SR*"))) == 1

    assert _storescu(peers["node_port"], [late_path]).returncode == 0
    srs = _wait_for(peers["received"], "SR*", 2)
    deadline = time.time() + 60
    while time.time() < deadline and study_json.read_text() == analysed:
        time.sleep(0.5)
    images = {im["sop_instance_uid"] for im in json.loads(study_json.read_text())["images"]}
    assert images == {source.SOPInstanceUID, late.SOPInstanceUID}
    newest = hd.sr.srread(next(p for p in srs if p != sr))
    evidence = {i.ReferencedSOPInstanceUID for s in newest.CurrentRequestedProcedureEvidenceSequence
                for se in s.ReferencedSeriesSequence for i in se.ReferencedSOPSequence}
    assert evidence == images


def test_tls_with_a_client_certificate_is_accepted_and_without_one_refused(tls_peers: dict) -> None:
    certs, port = tls_peers["certs"], str(tls_peers["node_port"])
    storescu = [require_tool("storescu"), "-xv", "-aet", "SENDER", "-aec", "CALCDX"]
    trusted = ["+cf", str(certs["ca"])]
    without_cert = subprocess.run([*storescu, "+tla", *trusted, "127.0.0.1", port, str(EXAMPLES / "img000010.dcm")],
                                  capture_output=True, text=True, timeout=120)
    plain = subprocess.run([*storescu, "127.0.0.1", port, str(EXAMPLES / "img000010.dcm")],
                           capture_output=True, text=True, timeout=120)
    assert without_cert.returncode != 0 and plain.returncode != 0
    assert not list((tls_peers["tmp"] / "spool" / "incoming").iterdir())
    with_cert = subprocess.run([*storescu, "+tls", str(certs["client_key"]), str(certs["client_crt"]), *trusted,
                                "127.0.0.1", port, str(EXAMPLES / "img000011.dcm")],
                               capture_output=True, text=True, timeout=120)
    assert with_cert.returncode == 0, with_cert.stderr
    assert _wait_for(tls_peers["received"], "SR*", 1)


def test_calling_ae_not_on_the_allow_list_is_rejected(peers: dict) -> None:
    result = _storescu(peers["node_port"], [EXAMPLES / "img000010.dcm"], aet="INTRUDER")
    assert result.returncode != 0
    assert not list((peers["tmp"] / "spool" / "incoming").iterdir())


def test_hostile_sop_instance_uid_stays_inside_the_spool(peers: dict) -> None:
    ds = pydicom.dcmread(EXAMPLES / "img000010.dcm")
    ds.SOPInstanceUID = "../../x"
    ds.StudyInstanceUID = "../../../etc"
    ae = AE(ae_title="SENDER")
    ae.add_requested_context(ComputedRadiographyImageStorage, ds.file_meta.TransferSyntaxUID)
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", peers["node_port"], ae_title="CALCDX")
    assert assoc.is_established
    status = assoc.send_c_store(ds)
    assoc.release()
    assert status.Status == 0x0000
    spool = (peers["tmp"] / "spool").resolve()
    stored = [p for p in spool.rglob("*.dcm")]
    assert stored and all(p.resolve().is_relative_to(spool) for p in stored)
    assert not (peers["tmp"].parent / "x.dcm").exists() and not Path("/etc/x.dcm").exists()


def test_sigkill_then_restart_processes_every_received_instance(peers: dict) -> None:
    files = [EXAMPLES / "img000010.dcm", EXAMPLES / "img000009.dcm"]
    os.killpg(peers["node"].pid, signal.SIGSTOP)  # receive nothing more while we prepare
    os.killpg(peers["node"].pid, signal.SIGCONT)
    assert _storescu(peers["node_port"], files).returncode == 0
    os.killpg(peers["node"].pid, signal.SIGKILL)  # before the idle time has passed: nothing analysed yet
    peers["node"].wait()
    restarted = subprocess.Popen([CALCDX, "serve", "dicom", "--config", str(peers["config"])],
                                 start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peers["node"] = restarted
    try:
        srs = _wait_for(peers["received"], "SR*", 2)
        studies = {pydicom.dcmread(p).StudyInstanceUID for p in srs}
        expected = {pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID for f in files}
        assert studies == expected
        time.sleep(3)
        assert len(list(peers["received"].glob("SR*"))) == 2  # exactly once
    finally:
        os.killpg(restarted.pid, signal.SIGTERM)
        restarted.wait(timeout=30)


def test_a_follow_up_sent_after_its_prior_is_compared_with_it(peers: dict) -> None:
    """Each study is written to a folder of its own, and the node keeps one follow-up history: a patient's
    later study, sent after the node analysed the prior, carries the comparison in its JSON and its SR."""
    sim = peers["tmp"] / "sim"
    made = subprocess.run([CALCDX, "simulate", "--n", "6", "--patterns", "hadd", "--regions", "shoulder", "--seed",
                           "5", "--spacing-mm", "0.4", "--follow-ups", "--workers", "1", "--out", str(sim)],
                          capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr
    for path in sim.glob("*.dcm"):  # the simulator writes several transfer syntaxes; storescu -xv proposes
        ds = pydicom.dcmread(path)   # JPEG 2000 and the uncompressed ones
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
            ds.save_as(path, enforce_file_format=True)
    follow_ups = sorted(sim.glob("*_fu.dcm"))
    priors = [p for p in sorted(sim.glob("img*.dcm")) if p not in follow_ups]
    assert follow_ups and priors
    sent = _storescu(peers["node_port"], priors)
    assert sent.returncode == 0, sent.stderr
    _wait_for(peers["received"], "SR*", len(priors))  # every prior analysed and sent back first
    sent = _storescu(peers["node_port"], follow_ups)
    assert sent.returncode == 0, sent.stderr
    _wait_for(peers["received"], "SR*", len(priors) + len(follow_ups))
    out = peers["tmp"] / "out"
    assert len(list(out.glob("followup-index-rank*.jsonl"))) == 1  # one history, beside the studies' folders
    follow_up_studies = {str(pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in follow_ups}
    compared = []
    for path in out.glob("*/*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("followup"):
            assert data["study_instance_uid"] in follow_up_studies
            assert all(c["prior_date"] < c["current_date"] for c in data["followup"])
            compared.append(data)
    assert compared, "no follow-up was compared with its prior"
    # calcdx followup over the node's per-study folders (docs: calcdx followup results/*/) finds them too
    studies = sorted(str(p) for p in out.iterdir() if p.is_dir())
    printed = subprocess.run([CALCDX, "followup", *studies, "--out", str(peers["tmp"] / "cmp")], capture_output=True,
                             text=True, timeout=300)
    assert printed.returncode == 0, printed.stderr
    table = json.loads((peers["tmp"] / "cmp" / "followup.json").read_text(encoding="utf-8"))["comparisons"]
    assert {c["current_study_uid"] for c in table} >= {data["study_instance_uid"] for data in compared}
    srs = {str(ds.StudyInstanceUID): ds for ds in (pydicom.dcmread(p) for p in peers["received"].glob("SR*"))}
    for data in compared:
        texts = [item.TextValue for item in _content_items(srs[data["study_instance_uid"]]) if "TextValue" in item]
        assert any(text.startswith("Follow-up of HADD") for text in texts)


def _content_items(ds: pydicom.Dataset) -> list[pydicom.Dataset]:
    """Every content item of an SR, depth first."""
    items = []
    for item in ds.get("ContentSequence", []):
        items.append(item)
        items.extend(_content_items(item))
    return items


def test_spool_refuses_paths_outside_its_root(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    ds = pydicom.dcmread(EXAMPLES / "img000010.dcm")
    ds.SOPInstanceUID = "1.2/../../../evil"
    path = spool.store(ds)
    assert path.resolve().is_relative_to((tmp_path / "spool").resolve())
    assert "evil" not in path.name


def test_node_config_validation(tmp_path: Path) -> None:
    from calcdx.errors import ConfigError

    with pytest.raises(ConfigError, match="AET@host:port"):
        NodeConfig(destination="PACS")
    bad = tmp_path / "n.yaml"
    bad.write_text("ae_title: X\nlisten_everywhere: true\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        NodeConfig.from_yaml(bad)
    assert NodeConfig(allowed=("A@1.2.3.4",)).is_allowed("A", "1.2.3.4")
    assert not NodeConfig(allowed=("A@1.2.3.4",)).is_allowed("A", "5.6.7.8")
