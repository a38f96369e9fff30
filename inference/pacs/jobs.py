"""Analysis jobs of the DICOMweb service: uploaded studies and studies pulled by reference.

Every job is a folder ``<work_dir>/jobs/<id>/`` holding ``job.json`` (its state, written
atomically), ``in/`` (the instances) and ``out/`` (JSON result, SR, overlays).  Jobs left
``queued`` or ``running`` by a stopped service are queued again at start.  One worker thread
runs the jobs in order (the model uses the CPU cores itself).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import re
import shutil
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from calcdx.errors import PacsError
from calcdx.inference.pacs.config import WebConfig
from calcdx.inference.pacs.spool import uid_key
from calcdx.inference.pacs.worker import uid_hash

logger = logging.getLogger(__name__)

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
SERIES_MODALITIES = frozenset({"CR", "DX", "RG", "PX"})
# any stored transfer syntax: no transcoding by the PACS (calcdx decodes JPEG 2000, JPEG-LS, RLE ...)
ANY_SYNTAX = (("application/dicom", "*"),)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _tag(record: dict[str, Any], tag: str) -> str | None:
    values = record.get(tag, {}).get("Value") or []
    return str(values[0]) if values else None


class JobStore:
    """Creates, persists and runs jobs."""

    def __init__(self, config: WebConfig, predictor: Callable[[], Any]) -> None:
        self.config = config
        self.root = Path(config.work_dir).resolve() / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self._predictor = predictor
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- state
    def folder(self, job_id: str) -> Path:
        """The folder of a job.  Raises KeyError for a malformed or unknown id."""
        if not JOB_ID.match(job_id) or not (self.root / job_id / "job.json").exists():
            raise KeyError(job_id)
        return self.root / job_id

    def get(self, job_id: str) -> dict[str, Any]:
        """The job record.  Raises KeyError for an unknown id."""
        return dict(json.loads((self.folder(job_id) / "job.json").read_text(encoding="utf-8")))

    def all(self) -> list[dict[str, Any]]:
        """Every job record, newest first."""
        records = []
        for path in self.root.glob("*/job.json"):
            try:
                records.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):  # a job being removed or written
                continue
        return sorted(records, key=lambda job: job.get("created", ""), reverse=True)

    def _save(self, job: dict[str, Any]) -> None:
        from calcdx.inference.study import atomic_write_text

        with self._lock:
            atomic_write_text(self.root / job["id"] / "job.json", json.dumps(job, indent=1))

    def _update(self, job_id: str, **changes: Any) -> dict[str, Any]:
        job = self.get(job_id)
        job.update(changes, updated=_now())
        self._save(job)
        return job

    def new(self, kind: str, **fields: Any) -> tuple[dict[str, Any], Path]:
        """Create a job folder (state ``receiving``); returns the record and its ``in/`` folder."""
        job_id = uuid.uuid4().hex
        (self.root / job_id / "in").mkdir(parents=True)
        job = {"id": job_id, "kind": kind, "status": "receiving", "created": _now(), "updated": _now(),
               "error": None, "outputs": {}, **fields}
        self._save(job)
        return job, self.root / job_id / "in"

    def discard(self, job_id: str) -> None:
        """Remove a job that was never queued (its upload was refused)."""
        shutil.rmtree(self.root / job_id, ignore_errors=True)

    def enqueue(self, job_id: str) -> dict[str, Any]:
        job = self._update(job_id, status="queued")
        self._queue.put(job_id)
        return job

    # ---------------------------------------------------------------- running
    def start(self) -> None:
        """Queue again what a stopped service left unfinished, then start the worker thread."""
        for path in sorted(self.root.glob("*/job.json")):
            job = json.loads(path.read_text(encoding="utf-8"))
            if job.get("status") in ("queued", "running"):
                self._queue.put(job["id"])
            elif job.get("status") == "receiving":  # upload cut off by the stop: never acknowledged
                shutil.rmtree(path.parent, ignore_errors=True)
        self._thread = threading.Thread(target=self._loop, name="calcdx-web-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            self.run(job_id)

    def run(self, job_id: str) -> None:
        """Run one job; its outcome (``done`` or ``failed`` with the error) goes to ``job.json``."""
        from calcdx.errors import CalcdxError

        job = self._update(job_id, status="running")
        try:
            outputs = self._run(job)
        except CalcdxError as exc:
            self._update(job_id, status="failed", error=exc.as_dict())
            logger.error("job %s failed: %s", job_id, exc.code)
        except Exception as exc:  # a failing job never stops the service
            self._update(job_id, status="failed", error={"code": "E_PACS", "reason": f"{type(exc).__name__}: {exc}",
                                                         "path": None})
            logger.exception("job %s failed", job_id)
        else:
            self._update(job_id, status="done", outputs=outputs)
            logger.info("job %s done", job_id)

    def _run(self, job: dict[str, Any]) -> dict[str, Any]:
        from calcdx.inference import analyze_study

        folder = self.root / job["id"]
        client = None
        if job["kind"] == "reference":
            client = self._client(job["dicomweb_url"])
            self._pull(client, job["study_instance_uid"], folder / "in")
        paths = sorted((folder / "in").glob("*.dcm"))
        if not paths:
            raise PacsError(f"no projection radiograph in study {uid_hash(job.get('study_instance_uid', ''))}")
        # one folder per job, one follow-up history for the service (see calcdx.inference.followup)
        result = analyze_study(paths, self._predictor(), folder / "out", history_dir=self.root)
        outputs: dict[str, Any] = {
            "result": result.json_path.name,
            "sr": result.sr_path.name if result.sr_path else None,
            "overlays": [p.name for p in result.overlay_scs],
            "overlay_pngs": [p.name for p in result.overlay_pngs],
            "refused": result.failures,
            "stored_back": False,
        }
        if client is not None and job.get("store_back", True):
            import pydicom

            objects = [pydicom.dcmread(p) for p in (result.sr_path, *result.overlay_scs) if p is not None]
            if objects:
                client.store_instances(objects)
                outputs["stored_back"] = True
        return outputs

    # ---------------------------------------------------------------- DICOMweb
    def _client(self, url: str) -> Any:
        from dicomweb_client import DICOMwebClient

        if not self.config.source_allowed(url):  # checked at submission too; the config may have changed
            raise PacsError(f"DICOMweb source not allowed: {url}")
        headers = {"Authorization": f"Bearer {self.config.dicomweb_token}"} if self.config.dicomweb_token else None
        return DICOMwebClient(url=url.rstrip("/"), headers=headers, timeout=self.config.request_timeout)

    def _pull(self, client: Any, study_uid: str, into: Path) -> None:
        """QIDO-RS for the study's radiograph series, WADO-RS for their instances, written to ``into``."""
        series = client.search_for_series(study_instance_uid=study_uid)
        wanted = [_tag(s, "0020000E") for s in series if _tag(s, "00080060") in SERIES_MODALITIES]
        count = 0
        for series_uid in wanted:
            if series_uid is None:
                continue
            for ds in client.retrieve_series(study_uid, series_uid, media_types=ANY_SYNTAX):
                count += 1
                if count > self.config.max_instances:
                    raise PacsError(f"study has more than {self.config.max_instances} instances")
                ds.save_as(into / f"{uid_key(str(ds.get('SOPInstanceUID', '')))}.dcm", enforce_file_format=True)
        logger.info("pulled %d instance(s) of study %s from %d series", count, uid_hash(study_uid), len(wanted))
