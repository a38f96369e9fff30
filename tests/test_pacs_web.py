"""``calcdx serve web`` as a real uvicorn process on loopback, called over HTTP by httpx and by
dicomweb-client (a real STOW-RS client).  The by-reference round trip against Orthanc's DICOMweb
plugin is in test_pacs_orthanc.py."""

from __future__ import annotations

import io
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import highdicom as hd
import httpx
import jsonschema
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from PIL import Image

from calcdx.inference.pacs.orthanc import wait_port
from tests.pacs_fixtures import EXAMPLES, free_port
from tests.reader_fixtures import sample_file

pytestmark = pytest.mark.pacs

CALCDX = str(Path(sys.executable).with_name("calcdx"))
SCHEMA = Path(__file__).resolve().parents[1] / "inference" / "schema" / "result-v1.json"
MAX_UPLOAD = 24 * 1024 * 1024


class WebService:
    """One ``calcdx serve web`` process and its settings."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        token_file = work / "token"
        token_file.write_text(self.token)
        self.config = work / "web.yaml"
        self.config.write_text(f"port: {self.port}\ntoken_file: {token_file}\nwork_dir: {work / 'jobs'}\n"
                               f"max_upload_bytes: {MAX_UPLOAD}\nmax_instances: 20\n"
                               "dicomweb_sources: ['http://127.0.0.1:9/dicom-web']\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.work / "web.log", "ab") as log:
            self.proc = subprocess.Popen([CALCDX, "serve", "web", "--config", str(self.config)],
                                         start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.port, timeout=120)

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def wait_done(self, job_id: str, timeout: float = 180) -> dict[str, Any]:
        deadline = time.time() + timeout
        with self.client() as http:
            while time.time() < deadline:
                job = http.get(f"/jobs/{job_id}").json()
                if job["status"] in ("done", "failed"):
                    return dict(job)
                time.sleep(0.3)
        raise TimeoutError(f"job {job_id} not finished: {job}")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebService]:
    web = WebService(tmp_path_factory.mktemp("web"))
    web.start()
    yield web
    web.kill()


def multipart(parts: list[bytes], boundary: str | None = None) -> tuple[bytes, str]:
    """A multipart/related body of application/dicom parts and its Content-Type."""
    boundary = boundary or uuid.uuid4().hex
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n"
                    for p in parts) + b"--" + boundary.encode() + b"--\r\n"
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def test_health_and_openapi_need_no_token(service: WebService) -> None:
    with httpx.Client(base_url=service.url) as http:
        assert http.get("/health").json()["status"] == "ok"
        spec = http.get("/openapi.json").json()
    assert {"/studies", "/studies/{study}", "/analyses", "/jobs", "/jobs/{job_id}", "/jobs/{job_id}/result",
            "/jobs/{job_id}/sr", "/jobs/{job_id}/overlays/{n}", "/jobs/{job_id}/overlays/{n}/png"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


@pytest.mark.parametrize("token", [None, "wrong-token-of-enough-length"])
def test_requests_without_the_right_token_are_refused(service: WebService, token: str | None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body, content_type = multipart([(EXAMPLES / "img000010.dcm").read_bytes()])
    with httpx.Client(base_url=service.url, headers=headers) as http:
        upload = http.post("/studies", content=body, headers={"Content-Type": content_type})
        for response in (http.get("/jobs"), upload):
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert response.json()["detail"]["code"] == "E_AUTH"
    assert not list((service.work / "jobs" / "jobs").glob("*/in/*.dcm"))


def test_stow_rs_upload_from_dicomweb_client_gives_sr_overlay_and_json(service: WebService) -> None:
    files = [EXAMPLES / "img000010.dcm", EXAMPLES / "img000009.dcm"]  # two studies: two jobs
    sources = [pydicom.dcmread(f) for f in files]
    stow = DICOMwebClient(url=service.url, headers={"Authorization": f"Bearer {service.token}"})
    response = stow.store_instances(sources)
    referenced = {item.ReferencedSOPInstanceUID: item.RetrieveURL for item in response.ReferencedSOPSequence}
    assert set(referenced) == {ds.SOPInstanceUID for ds in sources}
    assert "FailedSOPSequence" not in response
    job_ids = {url.rsplit("/", 1)[1] for url in referenced.values()}
    assert len(job_ids) == 2
    with service.client() as http:
        listed = http.get("/jobs", params={"study_instance_uid": sources[0].StudyInstanceUID}).json()["jobs"]
        assert [job["id"] for job in listed] == [referenced[sources[0].SOPInstanceUID].rsplit("/", 1)[1]]
        for job_id, source in zip([referenced[ds.SOPInstanceUID].rsplit("/", 1)[1] for ds in sources], sources,
                                  strict=True):
            job = service.wait_done(job_id)
            assert job["status"] == "done", job
            result = http.get(f"/jobs/{job_id}/result").json()
            jsonschema.validate(result, json.loads(SCHEMA.read_text()))
            assert result["study_instance_uid"] == source.StudyInstanceUID
            assert [image["sop_instance_uid"] for image in result["images"]] == [source.SOPInstanceUID]
            sr_bytes = http.get(f"/jobs/{job_id}/sr")
            assert sr_bytes.headers["content-type"] == "application/dicom"
            sr = hd.sr.srread(io.BytesIO(sr_bytes.content))
            assert sr.StudyInstanceUID == source.StudyInstanceUID
            groups = sr.content.get_planar_roi_measurement_groups()
            assert len(groups) == len(result["images"][0]["findings"])
            overlay = pydicom.dcmread(io.BytesIO(http.get(f"/jobs/{job_id}/overlays/0").content))
            assert overlay.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
            png = Image.open(io.BytesIO(http.get(f"/jobs/{job_id}/overlays/0/png").content))
            assert png.format == "PNG" and min(png.size) > 64
            assert http.get(f"/jobs/{job_id}/overlays/1").status_code == 404


def test_a_follow_up_sent_after_its_prior_is_compared_with_it(service: WebService, tmp_path: Path) -> None:
    """Each job writes to a folder of its own, and the service keeps one follow-up history: a patient's later
    study, stored after the prior's job finished, carries the comparison in its result."""
    sim = tmp_path / "sim"
    made = subprocess.run([CALCDX, "simulate", "--n", "6", "--patterns", "hadd", "--regions", "shoulder", "--seed",
                           "5", "--spacing-mm", "0.4", "--follow-ups", "--workers", "1", "--out", str(sim)],
                          capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr
    follow_ups = sorted(sim.glob("*_fu.dcm"))
    priors = [p for p in sorted(sim.glob("img*.dcm")) if p not in follow_ups]
    stow = DICOMwebClient(url=service.url, headers={"Authorization": f"Bearer {service.token}"})

    def stored(files: list[Path]) -> list[dict[str, Any]]:
        response = stow.store_instances([pydicom.dcmread(f) for f in files])
        jobs = {item.RetrieveURL.rsplit("/", 1)[1] for item in response.ReferencedSOPSequence}
        return [service.wait_done(job_id) for job_id in sorted(jobs)]

    assert all(job["status"] == "done" for job in stored(priors))  # every prior finished first
    compared = []
    with service.client() as http:
        for job in stored(follow_ups):
            assert job["status"] == "done", job
            result = http.get(f"/jobs/{job['id']}/result").json()
            if result.get("followup"):
                assert all(c["prior_date"] < c["current_date"] for c in result["followup"])
                assert "Follow-up of HADD against the latest prior study" in result["summary"]
                compared.append(result)
    assert compared, "no follow-up was compared with its prior"


def test_a_bad_part_is_refused_by_name_and_the_rest_is_analysed(service: WebService) -> None:
    ct = Path(sample_file("CT_small.dcm")).read_bytes()
    good = (EXAMPLES / "img000007.dcm").read_bytes()
    body, content_type = multipart([b"this is not DICOM at all" * 10, ct, good])
    with service.client() as http:
        response = http.post("/studies", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 202, response.text
    assert response.headers["content-type"] == "application/dicom+json"
    stow = pydicom.Dataset.from_json(response.json())
    assert [item.FailureReason for item in stow.FailedSOPSequence] == [0xC000, 0x0122]
    assert stow.FailedSOPSequence[1].ReferencedSOPInstanceUID == pydicom.dcmread(io.BytesIO(ct)).SOPInstanceUID
    refused = response.headers["X-Calcdx-Refused"]
    assert "part 0: E_NOT_DICOM" in refused and "part 1: E_NOT_RADIOGRAPH" in refused and "CT" in refused
    assert len(stow.ReferencedSOPSequence) == 1
    job_id = response.headers["Location"].rsplit("/", 1)[1]
    assert service.wait_done(job_id)["status"] == "done"


def test_bad_requests_get_specific_4xx_errors(service: WebService) -> None:
    not_dicom, content_type = multipart([b"\x00" * 300])
    ct_only, _ = multipart([Path(sample_file("CT_small.dcm")).read_bytes()], boundary="fixed")
    with service.client() as http:
        def post(body: bytes, ctype: str, path: str = "/studies") -> httpx.Response:
            return http.post(path, content=body, headers={"Content-Type": ctype})

        cases = {
            "not DICOM": (post(not_dicom, content_type), 400, "E_NOT_DICOM"),
            "not a radiograph": (post(ct_only, 'multipart/related; type="application/dicom"; boundary=fixed'),
                                 422, "E_NOT_RADIOGRAPH"),
            "wrong media type": (post(b"{}", "application/json"), 415, "E_MEDIA_TYPE"),
            "no boundary": (post(b"x", 'multipart/related; type="application/dicom"'), 400, "E_MULTIPART"),
            "too large": (post(b"\x00" * (MAX_UPLOAD + 1), content_type), 413, "E_TOO_LARGE"),
            "bad UID in path": (post(not_dicom, content_type, "/studies/1.2.abc"), 400, "E_UID"),
            "unknown job": (http.get(f"/jobs/{uuid.uuid4().hex}"), 404, "E_UNKNOWN_JOB"),
            "malformed job id": (http.get("/jobs/..%2F..%2Fetc"), 404, "E_HTTP_404"),
            "unknown route": (http.get("/wado"), 404, "E_HTTP_404"),
            "request body not JSON": (http.post("/analyses", content=b"[1"), 422, "E_REQUEST"),
            "source not allowed": (http.post("/analyses", json={"dicomweb_url": "http://10.0.0.1/dicom-web",
                                                                "study_instance_uid": "1.2.3"}), 403, "E_SOURCE"),
            "bad study UID": (http.post("/analyses", json={"dicomweb_url": "http://127.0.0.1:9/dicom-web",
                                                           "study_instance_uid": "1.2;rm"}), 400, "E_UID"),
        }
    for name, (response, status, code) in cases.items():
        assert response.status_code == status, (name, response.text)
        assert response.json()["detail"]["code"] == code, (name, response.text)
        assert response.json()["detail"]["reason"], name


def test_a_by_reference_job_whose_source_is_down_fails_with_its_reason(service: WebService) -> None:
    with service.client() as http:
        job = http.post("/analyses", json={"dicomweb_url": "http://127.0.0.1:9/dicom-web",
                                           "study_instance_uid": "1.2.3.4"}).json()
    finished = service.wait_done(job["id"])
    assert finished["status"] == "failed"
    assert finished["error"]["reason"]
    with service.client() as http:
        assert http.get(f"/jobs/{job['id']}/result").status_code == 409


def test_jobs_queued_when_the_service_is_killed_finish_after_a_restart(tmp_path: Path) -> None:
    web = WebService(tmp_path)
    web.start()
    try:
        files = [EXAMPLES / name for name in ("img000002.dcm", "img000003.dcm", "img000004.dcm")]
        body, content_type = multipart([f.read_bytes() for f in files])
        with web.client() as http:
            response = http.post("/studies", content=body, headers={"Content-Type": content_type})
        assert response.status_code == 200, response.text
        job_ids = response.headers["X-Calcdx-Jobs"].split(",")
        assert len(job_ids) == 3
        web.kill(signal.SIGKILL)  # acknowledged, at most one of them started
        web.start()
        for job_id in job_ids:
            assert web.wait_done(job_id)["status"] == "done"
        with web.client() as http:
            results = [http.get(f"/jobs/{job_id}/result").json() for job_id in job_ids]
        assert sorted(r["images"][0]["sop_instance_uid"] for r in results) == sorted(
            str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files)
    finally:
        web.kill()
