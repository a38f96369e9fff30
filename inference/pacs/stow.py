"""The STOW-RS response of ``calcdx serve web`` (PS3.18 10.5.3): what was accepted, what was refused.

The body is DICOM JSON (``application/dicom+json``) so any STOW-RS client (dicomweb-client,
Orthanc's DICOMweb plugin, OHIF) can read it: ReferencedSOPSequence for the accepted instances,
FailedSOPSequence with a FailureReason for the refused ones.  Where a STOW-RS server puts the
WADO-RS URL of a stored instance, calcdx puts the URL of the analysis job the instance went to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.responses import JSONResponse
from pydicom.dataset import Dataset

from calcdx.errors import CalcdxError, NotDicomError

# FailureReason values (PS3.18 Table I.2-1 / PS3.4 Annex B)
FAILURE_NOT_UNDERSTOOD = 0xC000  # cannot understand: not DICOM
FAILURE_SOP_CLASS = 0x0122  # SOP class not supported: not a projection radiograph
FAILURE_MISMATCH = 0xA900  # data set does not match: another study than the one in the URL
FAILURE_PROCESSING = 0x0110  # processing failure: anything else
DICOM_JSON = "application/dicom+json"


@dataclass(frozen=True)
class Received:
    """A part of the upload that is a projection radiograph."""

    path: Path
    study_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    job_id: str | None = None


@dataclass(frozen=True)
class Refusal:
    """A part of the upload that calcdx refused, and why."""

    part: str
    code: str
    reason: str
    failure_reason: int
    sop_class_uid: str = ""
    sop_instance_uid: str = ""

    @classmethod
    def from_error(cls, error: CalcdxError, path: Path) -> Refusal:
        """The refusal for ``error`` raised while checking the part stored at ``path``."""
        sop_class = sop_instance = ""
        if not isinstance(error, NotDicomError):
            from calcdx.datasets.reader import open_dicom

            try:
                ds = open_dicom(path)
                sop_class, sop_instance = str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", ""))
            except CalcdxError:
                pass
        failure = FAILURE_NOT_UNDERSTOOD if isinstance(error, NotDicomError) else (
            FAILURE_SOP_CLASS if error.code in ("E_NOT_RADIOGRAPH", "E_NO_PIXEL_DATA") else FAILURE_PROCESSING)
        return cls(str(error.path), error.code, error.reason, failure, sop_class, sop_instance)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.part, "code": self.code, "reason": self.reason}


def _sop_item(sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    item = Dataset()
    if sop_class_uid:
        item.ReferencedSOPClassUID = sop_class_uid
    if sop_instance_uid:
        item.ReferencedSOPInstanceUID = sop_instance_uid
    return item


def stow_response(accepted: list[Received], refused: list[Refusal], base_url: str) -> JSONResponse:
    """200 when every part was accepted, 202 when some were refused (PS3.18 10.5.3.1).

    Headers: ``Location`` names the first job; ``X-Calcdx-Jobs`` lists every job;
    ``X-Calcdx-Refused`` holds calcdx's code and reason for each refused part.
    """
    response = Dataset()
    job_ids = list(dict.fromkeys(item.job_id for item in accepted if item.job_id))
    if len(job_ids) == 1:
        response.RetrieveURL = f"{base_url}/jobs/{job_ids[0]}"
    referenced = []
    for item in accepted:
        entry = _sop_item(item.sop_class_uid, item.sop_instance_uid)
        entry.RetrieveURL = f"{base_url}/jobs/{item.job_id}"
        referenced.append(entry)
    response.ReferencedSOPSequence = referenced
    if refused:
        failed = []
        for refusal in refused:
            entry = _sop_item(refusal.sop_class_uid, refusal.sop_instance_uid)
            entry.FailureReason = refusal.failure_reason
            failed.append(entry)
        response.FailedSOPSequence = failed
    headers = {"Location": f"{base_url}/jobs/{job_ids[0]}", "X-Calcdx-Jobs": ",".join(job_ids)}
    if refused:
        text = "; ".join(f"{r.part}: {r.code} {r.reason}" for r in refused)
        text = "".join(c if " " <= c <= "~" else "?" for c in text)  # one printable ASCII header line
        headers["X-Calcdx-Refused"] = text[:4000]
    return JSONResponse(response.to_json_dict(), status_code=202 if refused else 200, headers=headers,
                        media_type=DICOM_JSON)
