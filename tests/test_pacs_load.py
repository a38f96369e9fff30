"""The DICOM node under load and faults, with real dcmtk senders and receiver on loopback:
200 instances from 4 concurrent ``storescu`` -> every instance analysed once, none lost; a SIGKILL
mid-stream then a restart -> every instance received before the kill is analysed exactly once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pydicom.errors import InvalidDicomError

from calcdx.inference.pacs.orthanc import wait_port
from calcdx.inference.sr import NOT_ANALYSED
from tests.pacs_fixtures import free_port, relabelled_instances
from tests.tools import require_tool

pytestmark = [pytest.mark.pacs, pytest.mark.slow]

CALCDX = str(Path(sys.executable).with_name("calcdx"))
ANALYSED = re.compile(r"study \w+ analysed: (\d+) image")
SENDERS, STUDIES, PER_STUDY = 4, 20, 10


class Site:
    """A dcmtk storescp as the PACS and a calcdx node that sends its results there."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.received = tmp / "pacs"
        self.received.mkdir()
        self.pacs_port, self.node_port = free_port(), free_port()
        self.config = tmp / "node.yaml"
        self.config.write_text(
            f"ae_title: CALCDX\nport: {self.node_port}\nallowed: [SENDER@127.0.0.1]\n"
            f"destination: PACS@127.0.0.1:{self.pacs_port}\nspool_dir: {tmp / 'spool'}\nout_dir: {tmp / 'out'}\n"
            "study_idle_seconds: 3.0\nsend_backoff_seconds: 0.2\nmax_associations: 8\n")
        self.storescp = subprocess.Popen([require_tool("storescp"), "--aetitle", "PACS", "--output-directory",
                                          str(self.received), str(self.pacs_port)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.node: subprocess.Popen[bytes] | None = None
        self.starts = 0
        wait_port(self.pacs_port)

    def start_node(self) -> None:
        self.starts += 1
        with open(self.tmp / f"node{self.starts}.log", "wb") as log:
            self.node = subprocess.Popen([CALCDX, "serve", "dicom", "--config", str(self.config)],
                                         start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.node_port, timeout=120)

    def stop_node(self, sig: int = signal.SIGTERM) -> None:
        if self.node is not None and self.node.poll() is None:
            os.killpg(self.node.pid, sig)
            self.node.wait(timeout=60)

    def close(self) -> None:
        self.stop_node()
        self.storescp.terminate()
        self.storescp.wait(timeout=30)

    def send(self, groups: list[list[Path]]) -> list[subprocess.Popen[str]]:
        """One storescu per group, all at once."""
        storescu = [require_tool("storescu"), "-v", "-xv", "-aet", "SENDER", "-aec", "CALCDX"]
        return [subprocess.Popen([*storescu, "127.0.0.1", str(self.node_port), *map(str, group)],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for group in groups]

    def spooled(self) -> set[str]:
        """SOP Instance UIDs on disk in the spool (file names are the UIDs)."""
        return {p.stem for p in (self.tmp / "spool").glob("*/*/*.dcm")}

    def analysed_images(self) -> int:
        """Images the node reported as analysed and delivered, over every run of it."""
        return sum(int(m.group(1)) for log in self.tmp.glob("node*.log") for m in ANALYSED.finditer(log.read_text()))

    def evidence(self) -> Counter[str]:
        """How many received SRs reference each source instance."""
        counts: Counter[str] = Counter()
        for path in self.received.glob("SR*"):
            sr = pydicom.dcmread(path)
            counts.update(i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                          for se in s.ReferencedSeriesSequence for i in se.ReferencedSOPSequence)
        return counts

    def declined(self) -> set[str]:
        """Source instances the received SRs mark "not analysed" (out of the model's scope)."""
        out = set()
        for path in self.received.glob("SR*"):
            for group in hd.sr.srread(path).content.get_image_measurement_groups():
                if any(e.value.value == NOT_ANALYSED.value for e in group.get_qualitative_evaluations()):
                    out.add(str(group.source_images[0].referenced_sop_instance_uid))
        return out

    def overlay_sources(self) -> Counter[str]:
        return Counter(str(pydicom.dcmread(p, stop_before_pixels=True).SourceImageSequence[0].ReferencedSOPInstanceUID)
                       for p in self.received.glob("SC*"))

    def evidence_so_far(self) -> Counter[str]:
        """``evidence`` while SRs are still arriving: storescp writes a file under its final name, so a
        poll can meet one half written; that poll counts nothing and the next one reads it whole."""
        try:
            return self.evidence()
        except (InvalidDicomError, EOFError, ValueError):
            return Counter()

    def wait_for_evidence(self, expected: set[str], timeout: float = 600) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if set(self.evidence_so_far()) >= expected and self.analysed_images() >= len(expected):
                time.sleep(4)  # anything more that would come (a duplicate) comes now
                return
            time.sleep(2)
        missing = expected - set(self.evidence_so_far())
        raise TimeoutError(f"{len(missing)} of {len(expected)} instances have no SR")


def acknowledged(log: str, files: list[Path]) -> set[str]:
    """SOP Instance UIDs whose C-STORE storescu saw succeed, from its verbose log."""
    sent_files = re.findall(r"Sending file: (\S+)", log)
    responses = re.findall(r"Received Store Response(?: \((\w+)\))?", log)
    by_path = {str(f): f for f in files}
    out = set()
    for path, status in zip(sent_files, responses, strict=False):
        if status == "Success" and path in by_path:
            out.add(str(pydicom.dcmread(by_path[path], stop_before_pixels=True).SOPInstanceUID))
    return out


@pytest.fixture
def site(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Site(tmp_path)
    yield s
    s.close()


def _groups(tmp: Path) -> tuple[list[list[Path]], set[str]]:
    studies = relabelled_instances(tmp / "src", STUDIES, PER_STUDY)
    study_lists = list(studies.values())
    groups = [[p for study in study_lists[k::SENDERS] for p in study] for k in range(SENDERS)]
    uids = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for g in groups for p in g}
    return groups, uids


def test_200_instances_from_4_concurrent_senders_each_analysed_once(site: Site, tmp_path: Path) -> None:
    groups, uids = _groups(tmp_path)
    assert len(uids) == SENDERS * STUDIES * PER_STUDY // SENDERS == 200
    site.start_node()
    senders = site.send(groups)
    logs = [p.communicate(timeout=600)[0] for p in senders]
    assert [p.returncode for p in senders] == [0] * SENDERS, logs[0][-2000:]
    assert set().union(*(acknowledged(log, g) for log, g in zip(logs, groups, strict=True))) == uids
    site.wait_for_evidence(uids)
    evidence = site.evidence()
    assert set(evidence) == uids  # none lost, nothing else referenced
    assert max(evidence.values()) == 1  # none in two SRs
    assert site.analysed_images() == 200  # none analysed twice
    declined = site.declined()  # the SR says "not analysed" and why; there is no overlay to draw
    assert len(declined) < 40
    assert site.overlay_sources() == Counter(dict.fromkeys(uids - declined, 1))


def test_sigkill_mid_stream_then_restart_analyses_each_received_instance_exactly_once(site: Site,
                                                                                       tmp_path: Path) -> None:
    groups, _ = _groups(tmp_path)
    site.start_node()
    senders = site.send(groups)
    deadline = time.time() + 300
    while len(site.spooled()) < 80 and time.time() < deadline:
        time.sleep(0.05)
    site.stop_node(signal.SIGKILL)
    logs = [p.communicate(timeout=120)[0] for p in senders]
    received = site.spooled()
    acked = set().union(*(acknowledged(log, g) for log, g in zip(logs, groups, strict=True)))
    assert 80 <= len(received) < 200, len(received)  # killed mid-stream
    assert acked <= received  # every acknowledged instance was on disk
    site.start_node()
    site.wait_for_evidence(received)
    evidence = site.evidence()
    assert set(evidence) == received
    assert max(evidence.values()) == 1
    assert site.analysed_images() == len(received)
    assert set(site.overlay_sources()) == received - site.declined()
