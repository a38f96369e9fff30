"""``calcdx serve web``: the DICOMweb-style analysis service (FastAPI, served by uvicorn).

Endpoints (all but ``/health`` and the OpenAPI document need ``Authorization: Bearer <token>``):

- ``POST /studies`` (and ``/studies/{study}``): STOW-RS upload, ``multipart/related;
  type="application/dicom"``; one job per study in the upload; the answer is a STOW-RS response
  (DICOM JSON; 200 all accepted, 202 some refused) whose RetrieveURLs and ``Location`` header
  name the jobs.
- ``POST /analyses``: analysis by reference, ``{"dicomweb_url", "study_instance_uid",
  "store_back"}``: the study is pulled with QIDO-RS/WADO-RS and the SR and overlays stored back
  with STOW-RS.  Only ``dicomweb_sources`` from the settings may be named.
- ``GET /jobs`` (``?study_instance_uid=``): the jobs; ``GET /jobs/{id}``: job state;
  ``GET /jobs/{id}/result``: result JSON; ``GET /jobs/{id}/sr``,
  ``GET /jobs/{id}/overlays/{n}``: the SR and overlay Secondary Captures as ``application/dicom``;
  ``GET /jobs/{id}/overlays/{n}/png``: the overlay as PNG.

Errors are JSON ``{"detail": {"code", "reason", ...}}``: 400 nothing DICOM / bad multipart,
401 no or wrong token, 403 source not allowed, 404 unknown job, 409 job not done,
413 upload too large, 415 wrong media type, 422 no radiograph in the upload.
"""

from __future__ import annotations

import logging
import re
import secrets
import tempfile
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from calcdx.errors import CalcdxError, NotDicomError
from calcdx.inference.pacs.config import WebConfig
from calcdx.inference.pacs.jobs import JobStore
from calcdx.inference.pacs.stow import FAILURE_MISMATCH, Received, Refusal, stow_response
from calcdx.version import __version__

logger = logging.getLogger(__name__)

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
BEARER = HTTPBearer(auto_error=False, description="the service's bearer token")


def _error(status: int, code: str, reason: str, **extra: Any) -> HTTPException:
    return HTTPException(status_code=status, detail={"code": code, "reason": reason, **extra})


class ReferenceRequest(BaseModel):
    """Analysis by reference: where the study is and whether the results go back there."""

    dicomweb_url: str = Field(description="DICOMweb base URL, one of the service's dicomweb_sources")
    study_instance_uid: str = Field(max_length=64, description="Study Instance UID")
    store_back: bool = Field(True, description="STOW-RS the SR and overlays back to dicomweb_url")


def split_multipart_related(body: bytes, content_type: str) -> list[bytes]:
    """The bodies of the parts of a ``multipart/related`` message (RFC 2387).

    Raises:
        HTTPException: 415 not multipart/related with type application/dicom; 400 no boundary
            or no part.
    """
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "multipart/related":
        raise _error(415, "E_MEDIA_TYPE", f'expected multipart/related; type="application/dicom", got {media!r}')
    if "application/dicom" not in content_type.lower():
        raise _error(415, "E_MEDIA_TYPE", 'multipart/related parts must be type="application/dicom"')
    match = _BOUNDARY.search(content_type)
    if not match:
        raise _error(400, "E_MULTIPART", "multipart/related without a boundary")
    delimiter = b"--" + match.group(1).encode("latin-1")
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise _error(400, "E_MULTIPART", "a multipart part has no header/body separator")
        headers = head.decode("latin-1").lower()
        if "content-type" in headers and "application/dicom" not in headers:
            raise _error(415, "E_MEDIA_TYPE", "every part must be application/dicom")
        parts.append(content[:-2] if content.endswith(b"\r\n") else content)
    if not parts:
        raise _error(400, "E_MULTIPART", "the multipart body holds no part")
    return parts


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _error(413, "E_TOO_LARGE", f"upload of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _error(413, "E_TOO_LARGE", f"upload exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_instance(path: Path, name: str) -> Received:
    """What a received part is, if it is a projection radiograph (pixel data not decoded).

    Raises:
        CalcdxError: NotDicomError, NotRadiographError, ... (with ``path`` set to ``name``).
    """
    from calcdx.datasets.acceptance import check_projection_radiograph
    from calcdx.datasets.reader import open_dicom

    try:
        ds = open_dicom(path)
        check_projection_radiograph(ds, name)
    except CalcdxError as exc:
        exc.path = name
        raise
    return Received(path, str(ds.get("StudyInstanceUID", "")), str(ds.get("SOPClassUID", "")),
                    str(ds.get("SOPInstanceUID", "")))


def add_error_handlers(app: FastAPI) -> None:
    """Every error body has the same shape, ``{"detail": {"code", "reason", ...}}``, including
    FastAPI's own (no such route, wrong method, a request body that fails validation)."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, dict) else {"code": f"E_HTTP_{exc.status_code}",
                                                                   "reason": str(exc.detail)}
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"where": ".".join(map(str, e.get("loc", ()))), "reason": e.get("msg", "")} for e in exc.errors()]
        reason = "; ".join(f"{e['where']}: {e['reason']}" for e in errors)
        return JSONResponse({"detail": {"code": "E_REQUEST", "reason": reason, "errors": errors}}, status_code=422)


def create_app(config: WebConfig, predictor: Any = None) -> FastAPI:
    """The FastAPI application.  ``predictor``: a ``calcdx.inference.Predictor`` (loaded lazily when None).

    Raises:
        ConfigError: no bearer token configured.
    """
    token = config.resolved_token()
    state: dict[str, Any] = {"predictor": predictor}

    def get_predictor() -> Any:
        if state["predictor"] is None:
            from calcdx.inference import Predictor

            state["predictor"] = Predictor(config.model_dir)
        return state["predictor"]

    jobs = JobStore(config, get_predictor)
    def authorised(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> None:
        if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), token.encode()):
            raise HTTPException(status_code=401, detail={"code": "E_AUTH", "reason": "missing or wrong bearer token"},
                                headers={"WWW-Authenticate": "Bearer"})

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        jobs.start()
        yield
        jobs.stop()

    app = FastAPI(title="calcdx DICOMweb analysis service", version=__version__,
                  description="Soft-tissue calcification analysis of radiographs. Research software, "
                              "not a medical device.",
                  lifespan=lifespan)
    app.state.jobs = jobs
    add_error_handlers(app)
    app.state.get_predictor = get_predictor

    def job_or_404(job_id: str) -> tuple[dict[str, Any], Path]:
        try:
            return jobs.get(job_id), jobs.folder(job_id)
        except KeyError:
            raise _error(404, "E_UNKNOWN_JOB", f"no job {job_id[:40]!r}") from None

    def done_or_409(job_id: str) -> tuple[dict[str, Any], Path]:
        job, folder = job_or_404(job_id)
        if job["status"] != "done":
            raise _error(409, "E_NOT_DONE", f"job is {job['status']}", job=job)
        return job, folder

    def links(job_id: str) -> dict[str, str]:
        return {"status": f"/jobs/{job_id}", "result": f"/jobs/{job_id}/result", "sr": f"/jobs/{job_id}/sr"}

    @app.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        """Liveness (no authentication; reveals nothing about jobs)."""
        return {"status": "ok", "version": __version__}

    @app.post("/studies", dependencies=[Depends(authorised)], tags=["STOW-RS"], response_model=None,
              responses={200: {"description": "every instance accepted (STOW-RS response, DICOM JSON)"},
                         202: {"description": "some instances refused: FailedSOPSequence says which"}})
    @app.post("/studies/{study}", dependencies=[Depends(authorised)], tags=["STOW-RS"], response_model=None)
    async def store_studies(request: Request, study: str | None = None) -> JSONResponse:
        """STOW-RS upload: multipart/related; type="application/dicom". One analysis job per study.

        The answer is a STOW-RS response (``application/dicom+json``): ReferencedSOPSequence for the
        accepted instances, FailedSOPSequence (with FailureReason) for the refused ones.  The
        RetrieveURL of each accepted instance, and the ``Location`` header, name its analysis job
        (``/jobs/{id}``); ``X-Calcdx-Refused`` gives calcdx's reason for each refused part.
        """
        if study is not None and not (len(study) <= 64 and _UID.match(study)):
            raise _error(400, "E_UID", "the Study Instance UID in the path is not a valid UID")
        body = await _read_limited(request, config.max_upload_bytes)
        parts = split_multipart_related(body, request.headers.get("content-type", ""))
        del body
        if len(parts) > config.max_instances:
            raise _error(413, "E_TOO_MANY", f"{len(parts)} instances exceed the limit of {config.max_instances}")
        base = str(request.base_url).rstrip("/")
        accepted, refused = _accept(parts, study)
        return stow_response(accepted, refused, base)

    def _accept(parts: list[bytes], study: str | None) -> tuple[list[Received], list[Refusal]]:
        """Check each part, group the radiographs by study and queue one job per study."""
        by_study: dict[str, list[Received]] = defaultdict(list)
        refused: list[Refusal] = []
        with tempfile.TemporaryDirectory(dir=jobs.root, prefix=".upload-") as tmp:
            for n, content in enumerate(parts):
                path = Path(tmp) / f"part{n:05d}.dcm"
                path.write_bytes(content)
                try:
                    item = _check_instance(path, f"part {n}")
                except CalcdxError as exc:
                    refused.append(Refusal.from_error(exc, path))
                    continue
                if study is not None and item.study_uid != study:
                    refused.append(Refusal(f"part {n}", "E_UID", "belongs to another study", FAILURE_MISMATCH,
                                           item.sop_class_uid, item.sop_instance_uid))
                    continue
                by_study[item.study_uid].append(item)
            if not by_study:
                if all(r.code == NotDicomError.code for r in refused):
                    raise _error(400, "E_NOT_DICOM", "no part of the upload is DICOM",
                                 failures=[r.as_dict() for r in refused])
                raise _error(422, "E_NOT_RADIOGRAPH", "no projection radiograph in the upload",
                             failures=[r.as_dict() for r in refused])
            accepted: list[Received] = []
            for uid, items in by_study.items():
                job, into = jobs.new("upload", study_instance_uid=uid, instances=len(items))
                for item in items:
                    item.path.replace(into / item.path.name)
                jobs.enqueue(job["id"])
                accepted.extend(replace(item, job_id=job["id"]) for item in items)
        return accepted, refused

    @app.post("/analyses", status_code=202, dependencies=[Depends(authorised)], tags=["by reference"])
    def analyse_by_reference(request: ReferenceRequest) -> dict[str, Any]:
        """Pull a study from a DICOMweb server (QIDO-RS + WADO-RS), analyse it, STOW-RS the results back."""
        if not config.source_allowed(request.dicomweb_url):
            raise _error(403, "E_SOURCE", "this DICOMweb URL is not among the service's dicomweb_sources")
        if not _UID.match(request.study_instance_uid):
            raise _error(400, "E_UID", "study_instance_uid is not a valid UID")
        job, _ = jobs.new("reference", study_instance_uid=request.study_instance_uid,
                          dicomweb_url=request.dicomweb_url.rstrip("/"), store_back=request.store_back)
        return {**jobs.enqueue(job["id"]), "links": links(job["id"])}

    @app.get("/jobs", dependencies=[Depends(authorised)], tags=["jobs"])
    def list_jobs(study_instance_uid: str | None = None) -> dict[str, Any]:
        """Every job, newest first, or only those of one study (``?study_instance_uid=``)."""
        found = [job for job in jobs.all() if study_instance_uid in (None, job.get("study_instance_uid"))]
        return {"jobs": [{**job, "links": links(job["id"])} for job in found]}

    @app.get("/jobs/{job_id}", dependencies=[Depends(authorised)], tags=["jobs"])
    def job_status(job_id: str) -> dict[str, Any]:
        """State of a job: receiving, queued, running, done or failed (with the error)."""
        job, _ = job_or_404(job_id)
        return {**job, "links": links(job_id)}

    @app.get("/jobs/{job_id}/result", dependencies=[Depends(authorised)], tags=["jobs"])
    def job_result(job_id: str) -> FileResponse:
        """The result JSON (findings, differential, outputs) of a finished job."""
        job, folder = done_or_409(job_id)
        return FileResponse(folder / "out" / job["outputs"]["result"], media_type="application/json")

    @app.get("/jobs/{job_id}/sr", dependencies=[Depends(authorised)], tags=["jobs"])
    def job_sr(job_id: str) -> FileResponse:
        """The Comprehensive SR (TID 1500) as application/dicom."""
        job, folder = done_or_409(job_id)
        if not job["outputs"].get("sr"):
            raise _error(404, "E_NO_SR", "this job produced no SR (no readable radiograph)")
        return FileResponse(folder / "out" / job["outputs"]["sr"], media_type="application/dicom")

    def overlay(job_id: str, n: int, key: str, media_type: str) -> FileResponse:
        job, folder = done_or_409(job_id)
        names = job["outputs"].get(key, [])
        if not 0 <= n < len(names):
            raise _error(404, "E_NO_OVERLAY", f"overlay {n} does not exist ({len(names)} overlay(s))")
        return FileResponse(folder / "out" / names[n], media_type=media_type)

    @app.get("/jobs/{job_id}/overlays/{n}", dependencies=[Depends(authorised)], tags=["jobs"])
    def job_overlay(job_id: str, n: int) -> FileResponse:
        """Overlay number ``n`` (from 0) as a DICOM Secondary Capture."""
        return overlay(job_id, n, "overlays", "application/dicom")

    @app.get("/jobs/{job_id}/overlays/{n}/png", dependencies=[Depends(authorised)], tags=["jobs"])
    def job_overlay_png(job_id: str, n: int) -> FileResponse:
        """Overlay number ``n`` (from 0) as PNG."""
        return overlay(job_id, n, "overlay_pngs", "image/png")

    return app
