"""One study: image results -> differential -> JSON, SR and overlays, written atomically.

``finalize_study`` is shared by the batch runner (``calcdx predict``) and the PACS front
ends (``analyze_study``), so every path produces the same files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom.uid import generate_uid

from calcdx.datasets.radiograph import Radiograph
from calcdx.datasets.reader import header_only, read_radiographs
from calcdx.errors import CalcdxError
from calcdx.findings import Finding
from calcdx.inference.followup import against_priors, append_to_index, read_index, study_deposits
from calcdx.inference.isolation import ForkedRunner, ProcessDiedError, death_error
from calcdx.inference.predictor import ImageResult, Predictor
from calcdx.version import __version__

if TYPE_CHECKING:
    from calcdx.inference.overlay import RenderedOverlay

logger = logging.getLogger(__name__)

SCHEMA_ID = "https://calcdx.invalid/schema/result-v1.json"
SCHEMA_VERSION = "1.2"
"""1.1 added the optional patient_id, study_date and followup, and each image's body_part, laterality and
view_position."""
DERIVED_UID_ROOT = "1.2.826.0.1.3680043.10.1398.3."
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def safe_name(uid: str) -> str:
    """A file-name-safe key for a UID: the UID itself when valid, else a hash (never a path)."""
    if uid and len(uid) <= 64 and _UID.match(uid):
        return uid
    return "x" + hashlib.sha256(uid.encode("utf-8", "replace")).hexdigest()[:40]


@dataclass
class StudyResult:
    """What was written for one study."""

    study_uid: str
    result: dict[str, Any]
    json_path: Path
    sr_path: Path | None = None
    overlay_pngs: list[Path] = field(default_factory=list)
    overlay_scs: list[Path] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


ImageKey = tuple[str, int]
"""An image of a study: (SOP Instance UID, frame index)."""


def _differentials(images: list[ImageResult], radiographs: dict[ImageKey, Radiograph], context: Any
                   ) -> tuple[dict[ImageKey, list[dict[str, Any]]], dict[ImageKey, list[str]], dict[str, Any] | None,
                              str]:
    """Each finding's differential (as a dict and as text) by image, the study's, and its summary text."""
    from calcdx.rules import combine_differentials, explain

    per_image: dict[ImageKey, list[dict[str, Any]]] = {}
    texts: dict[ImageKey, list[str]] = {}
    per_finding = []
    for image in images:
        key = (image.sop_instance_uid, image.frame_index)
        r = radiographs.get(key)
        per_image[key] = []
        texts[key] = []
        for finding in image.findings:
            diff = explain([finding], context, patient_age_years=r.patient_age_years if r else None,
                           patient_sex=r.patient_sex if r else None)
            per_image[key].append(diff.to_dict())
            texts[key].append(diff.to_text(max_entries=3))
            per_finding.append(diff)
    if not per_finding:
        return per_image, texts, None, "No soft-tissue calcification reached the model's thresholds."
    study = combine_differentials(per_finding, context)
    return per_image, texts, study.to_dict(), study.to_text(max_entries=5)


def _with_caveats(summary: str, images: list[ImageResult]) -> str:
    """The study text, plus what the reader must know about images declined or read with low confidence.

    Without it a study whose only image was declined would read "No soft-tissue calcification
    reached the model's thresholds", which the model never said.
    """
    declined = sum(im.status != "analyzed" for im in images)
    low = sum(im.low_confidence for im in images)
    notes = [summary]
    if declined:
        notes.append(f"{declined} of {len(images)} image(s) not analysed: unlike the model's training data.")
    if low:
        notes.append(f"{low} of {len(images)} image(s) analysed with low confidence (unusual for the training "
                     "data): check their findings by eye.")
    return " ".join(notes)


def _declined(images: list[ImageResult]) -> dict[str, str]:
    """SOP Instance UID -> reason, for instances of which no frame was analysed."""
    analysed = {im.sop_instance_uid for im in images if im.status == "analyzed"}
    return {im.sop_instance_uid: im.reason or "not analysed" for im in images if im.sop_instance_uid not in analysed}


def finalize_study(study_uid: str, images: list[ImageResult], radiographs: dict[ImageKey, Radiograph],
                   sources: dict[str, Path], refused: list[dict[str, Any]], predictor: Predictor, out_dir: Path, *,
                   context: Any = None, write_sr: bool = True, write_overlays: bool = True,
                   overlays: dict[ImageKey, RenderedOverlay] | None = None,
                   history_dir: str | Path | None = None) -> StudyResult:
    """Attach differentials, write the study JSON (last, atomically), SR and overlays.

    The JSON is written last: its presence marks the study as done for resumption.  The SR and
    overlay modules (highdicom, Pillow) are imported only when those files are written.  ``radiographs``:
    each image's radiograph by (SOP Instance UID, frame), so that each frame of a multi-frame file gets its
    own overlay (keyed by the UID alone, every frame was drawn on the last one's pixels).  ``overlays``:
    pictures already drawn, by (SOP Instance UID, frame) (a batch's workers draw them); the others are
    drawn here.  ``history_dir``: the folder whose follow-up index gives the patient's prior studies and gets
    this one (``calcdx.inference.followup``); default ``out_dir``.  The PACS front ends write each study to a
    folder of its own and keep one history for all.
    """
    key = safe_name(study_uid)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_image, texts, study_diff, summary = _differentials(images, radiographs, context)
    summary = _with_caveats(summary, images)
    result: dict[str, Any] = {
        "$schema": SCHEMA_ID, "schema_version": SCHEMA_VERSION, "calcdx_version": __version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "disclaimer": "research software, not a medical device",
        "model": predictor.identity, "study_instance_uid": study_uid,
        # first known across the study's images: what follow-up comparison groups and orders by
        "patient_id": next((r.patient_id for r in radiographs.values() if r.patient_id), None),
        "study_date": next((r.study_date for r in radiographs.values() if r.study_date), None),
        "images": [], "refused": refused, "study_differential": study_diff, "summary": summary, "outputs": {},
    }
    for image in images:
        record = image.to_dict()
        for fdict, ddict in zip(record["findings"], per_image.get((image.sop_instance_uid, image.frame_index), []),
                                strict=False):
            fdict["differential"] = ddict
        result["images"].append(record)
    deposits = study_deposits(result)
    history = out_dir if history_dir is None else Path(history_dir)
    followup_text = None
    if deposits is not None:  # HADD against the patient's prior studies already in the history folder
        changes = against_priors(deposits, [s for s in read_index(history, deposits.patient_id)
                                            if s.study_uid != study_uid])
        if changes:
            result["followup"] = [change.to_dict() for change in changes]
            followup_text = ("Follow-up of HADD against the latest prior study of each body part and side: "
                             + "; ".join(f"{change.text} (prior {change.prior_date})" for change in changes) + ".")
            result["summary"] = f"{summary} {followup_text}"
    written = StudyResult(study_uid=study_uid, result=result, json_path=out_dir / f"{key}.json")
    headers = {}
    for image in images if write_sr or write_overlays else []:
        # declined (out-of-distribution) images are in the SR too, marked "not analysed" with the reason
        if image.sop_instance_uid in sources and image.sop_instance_uid not in headers:
            try:
                headers[image.sop_instance_uid] = header_only(sources[image.sop_instance_uid])
            except CalcdxError as exc:
                logger.warning("%s: header re-read failed (%s)", sources[image.sop_instance_uid], exc)
    if write_overlays:
        from calcdx.inference import overlay as ov

        series_uid = None
        for n, image in enumerate(images, start=1):
            r = radiographs.get((image.sop_instance_uid, image.frame_index))
            if r is None or image.status != "analyzed":
                continue
            drawn = (overlays or {}).get((image.sop_instance_uid, image.frame_index)) or ov.render(r, image.findings)
            stem = f"{key}_{safe_name(image.sop_instance_uid)}_f{image.frame_index}"
            written.overlay_pngs.append(ov.write_png(out_dir / f"{stem}_overlay.png", drawn.png))
            if image.sop_instance_uid in headers:
                key_parts = [study_uid, predictor.weights_sha256]
                series_uid = series_uid or generate_uid(prefix=DERIVED_UID_ROOT, entropy_srcs=["scs", *key_parts])
                sc = ov.secondary_capture(drawn.rgb, headers[image.sop_instance_uid], series_uid=series_uid,
                                          instance_number=n, sop_instance_uid=generate_uid(
                                              prefix=DERIVED_UID_ROOT,
                                              entropy_srcs=["sc", *key_parts, image.sop_instance_uid,
                                                            str(image.frame_index)]))
                sc_path = out_dir / f"{stem}_overlay.dcm"
                sc.save_as(sc_path.with_suffix(".tmp"), enforce_file_format=True)
                sc_path.with_suffix(".tmp").replace(sc_path)
                written.overlay_scs.append(sc_path)
    if write_sr and headers:
        from calcdx.inference import sr as srmod

        # every frame's findings, differential texts and (1-based) frame numbers, in the same order
        findings_by_sop: dict[str, list[Finding]] = {uid: [] for uid in headers}
        texts_by_sop: dict[str, list[str]] = {uid: [] for uid in headers}
        frames_by_sop: dict[str, list[int]] = {uid: [] for uid in headers}
        for im in images:
            if im.sop_instance_uid in headers:
                findings_by_sop[im.sop_instance_uid] += im.findings
                texts_by_sop[im.sop_instance_uid] += texts.get((im.sop_instance_uid, im.frame_index), [])
                frames_by_sop[im.sop_instance_uid] += [im.frame_index + 1] * len(im.findings)
        # deterministic UIDs: re-analysing the same study with the same model re-creates the same SR
        # instance, so a PACS that receives it twice (after a crash and restart) keeps one copy
        sr_key = [study_uid, predictor.weights_sha256, *sorted(headers)]
        sr = srmod.build_sr(list(headers.values()), findings_by_sop, texts_by_sop, frames_by_sop=frames_by_sop,
                            model_identity=predictor.identity,
                            sop_instance_uid=generate_uid(prefix=DERIVED_UID_ROOT, entropy_srcs=["sr", *sr_key]),
                            series_instance_uid=generate_uid(prefix=DERIVED_UID_ROOT, entropy_srcs=["srs", *sr_key]),
                            study_summary=summary,
                            image_probabilities={im.sop_instance_uid: im.probabilities for im in images},
                            not_analysed=_declined(images),
                            cautions={im.sop_instance_uid: im.reason or "" for im in images if im.low_confidence},
                            followup_text=followup_text)
        written.sr_path = srmod.write_sr(out_dir / f"{key}_sr.dcm", sr)
    result["outputs"] = {
        "sr": written.sr_path.name if written.sr_path else None,
        "overlay_png": [p.name for p in written.overlay_pngs],
        "overlay_dicom": [p.name for p in written.overlay_scs],
    }
    if deposits is not None:  # before the JSON: a study killed in between is redone, and its line replaced
        append_to_index(history, deposits)
    # one line: json's C encoder (indent= falls back to the pure-Python one, 10x slower on a
    # ~100 kB result); `python -m json.tool` or jq print it indented
    atomic_write_text(written.json_path, json.dumps(result, ensure_ascii=False) + "\n")
    return written


_READER = ForkedRunner()
"""The process that decodes ``analyze_study``'s files, forked at its first file and again after one killed it."""


def analyze_study(paths: Sequence[str | Path], predictor: Predictor, out_dir: str | Path, *, context: Any = None,
                  write_sr: bool = True, write_overlays: bool = True,
                  history_dir: str | Path | None = None) -> StudyResult:
    """Analyse the files of one study (used by the PACS front ends); ``history_dir`` as ``finalize_study``'s.

    Files that cannot be read are listed in ``result["refused"]`` and ``failures``; the
    study is still reported.  Raises nothing for bad input files.  Each file is decoded in a forked
    process (``_READER``, a ``calcdx.inference.isolation.ForkedRunner``): a decoder that crashes on a malformed
    file, or the system killing the process for memory, refuses that file instead of ending the server
    (which, restarted, would have met the same study again).
    """
    images: list[ImageResult] = []
    radiographs: dict[ImageKey, Radiograph] = {}
    sources: dict[str, Path] = {}
    refused: list[dict[str, Any]] = []
    study_uid = ""
    for path in paths:
        try:
            frames = _READER(read_radiographs, path, coarsest_spacing_mm=predictor.decode_spacing_mm)
        except ProcessDiedError as death:
            refused.append(death_error(path, death.how).as_dict())
            continue
        except CalcdxError as exc:
            refused.append(exc.as_dict())
            continue
        for r in frames:
            study_uid = study_uid or r.study_instance_uid
            result = predictor.analyze(r)
            images.append(result)
            radiographs[(r.sop_instance_uid, r.frame_index)] = r
            sources[r.sop_instance_uid] = Path(path)
    if not study_uid:
        try:
            study_uid = str(header_only(paths[0]).get("StudyInstanceUID", "")) if paths else ""
        except CalcdxError:
            study_uid = ""
    written = finalize_study(study_uid or "unknown", images, radiographs, sources, refused, predictor, Path(out_dir),
                             context=context, write_sr=write_sr, write_overlays=write_overlays,
                             history_dir=history_dir)
    written.failures = refused
    return written
