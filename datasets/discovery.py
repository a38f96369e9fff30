"""Study discovery: files, folders, DICOMDIRs and list files -> studies of ordered instances.

Only headers are read (no pixel data).  Files that are not DICOM, or DICOMDIR entries
pointing outside the DICOMDIR's root, are skipped and reported with their error; calcdx's own
SRs and overlay Secondary Captures (a results folder inside a folder it reads, or a study
fetched back from a PACS with them), and every further copy of an instance (a SOP Instance UID
found before), are passed over and counted; the
rest is grouped by StudyInstanceUID, with series and instances in a stable order
(SeriesNumber, InstanceNumber, then path).  Each study keeps its Patient ID and date, so a
batch can put a patient's studies in date order (a follow-up is compared with its prior).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.fileset import FileSet
from pydicom.uid import Comprehensive3DSRStorage, SecondaryCaptureImageStorage

from calcdx.datasets.reader import header_only, open_dicom, study_date
from calcdx.errors import CalcdxError, CorruptDicomError, InputError, NotDicomError
from calcdx.version import MANUFACTURER

logger = logging.getLogger(__name__)

LIST_FILE_SUFFIXES = (".txt", ".lst", ".list")
SIDECAR_SUFFIXES = frozenset({".json", ".npz", ".npy", ".csv", ".png", ".jpg", ".jpeg", ".md", ".yaml", ".yml",
                              ".py", ".txt", ".log", ".pdf", ".zip", ".jsonl"})
"""In folder walks these are never DICOM (annotations, masks, manifests): passed over silently.
Named explicitly on the command line they are still tried, and refused with a reason."""
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
OWN_OUTPUT_SOP_CLASSES = frozenset({str(Comprehensive3DSRStorage), str(SecondaryCaptureImageStorage)})
"""What calcdx writes into a study: its measurement report and its overlays (``calcdx.inference``)."""


@dataclass(frozen=True, slots=True)
class Instance:
    """One DICOM file of a study (header facts only)."""

    path: Path
    sop_instance_uid: str
    series_instance_uid: str
    series_number: int
    instance_number: int
    modality: str


@dataclass(slots=True)
class Study:
    """The instances of one StudyInstanceUID, ordered."""

    study_uid: str
    instances: list[Instance] = field(default_factory=list)
    patient_id: str | None = None
    study_date: str | None = None
    """ISO ``YYYY-MM-DD`` (Study Date, else Series, Acquisition or Content Date of its first file)."""

    @property
    def paths(self) -> list[Path]:
        return [i.path for i in self.instances]


@dataclass(slots=True)
class DiscoveryResult:
    studies: list[Study]
    skipped: list[tuple[Path, CalcdxError]]
    own_outputs: list[Path] = field(default_factory=list)
    """calcdx's own SRs and overlays found among the inputs, passed over (``is_own_output``)."""
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)
    """(copy, file kept): files whose SOP Instance UID an earlier file has, passed over so that an instance
    is analysed once (its findings would count twice in the study's differential and SR)."""

    @property
    def n_instances(self) -> int:
        return sum(len(s.instances) for s in self.studies)


def _int(value: object, default: int = 0) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() not in SIDECAR_SUFFIXES:
                yield Path(dirpath) / name


def _inside(root: Path, target: Path, dicomdir: Path, skipped: list[tuple[Path, CalcdxError]]) -> bool:
    if target.is_relative_to(root):
        return True
    skipped.append((target, InputError(f"DICOMDIR {dicomdir} refers to a file outside its folder {root}; skipped",
                                       path=target)))
    return False


def _dicomdir_records(ds: Dataset, path: Path, root: Path, skipped: list[tuple[Path, CalcdxError]]) -> list[Path]:
    """Fallback when pydicom's FileSet refuses the whole DICOMDIR (e.g. one entry escapes its
    root): take each record's ReferencedFileID, keeping the entries inside the root."""
    files: list[Path] = []
    try:
        records = list(ds.DirectoryRecordSequence)
    except Exception as exc:
        skipped.append((path, CorruptDicomError(f"DICOMDIR has no readable directory records ({exc})", path=path)))
        return files
    for record in records:
        try:
            if "ReferencedFileID" not in record:
                continue
            value = record.ReferencedFileID
            parts = [str(value)] if isinstance(value, str) else [str(v) for v in value]
            target = root.joinpath(*parts).resolve()
        except Exception as exc:  # a corrupt record: skip it, keep the others
            skipped.append((path, CorruptDicomError(f"DICOMDIR record unusable ({exc})", path=path)))
            continue
        if _inside(root, target, path, skipped):
            files.append(target)
    return files


def _dicomdir_files(path: Path, skipped: list[tuple[Path, CalcdxError]]) -> list[Path]:
    """The files a DICOMDIR references, each checked to lie inside the DICOMDIR's folder."""
    root = path.parent.resolve()
    try:
        ds = open_dicom(path)
    except CalcdxError as exc:
        skipped.append((path, exc))
        return []
    try:
        fileset = FileSet(ds)
    except Exception as exc:
        logger.info("%s: pydicom's FileSet refused it (%s); reading its records one by one", path, exc)
        return _dicomdir_records(ds, path, root, skipped)
    files: list[Path] = []
    for instance in fileset:
        try:
            target = Path(instance.path).resolve()
        except (OSError, ValueError) as exc:
            skipped.append((path, InputError(f"DICOMDIR entry unusable ({exc})", path=path)))
            continue
        if _inside(root, target, path, skipped):
            files.append(target)
    return files


def _expand(paths: Sequence[str | os.PathLike[str]], skipped: list[tuple[Path, CalcdxError]],
            depth: int = 0) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            dicomdir = path / "DICOMDIR"
            if dicomdir.is_file():
                files.extend(_dicomdir_files(dicomdir, skipped))
            else:
                files.extend(_walk(path))
        elif path.is_file() and path.name.upper() == "DICOMDIR":
            files.extend(_dicomdir_files(path, skipped))
        elif path.is_file() and path.suffix.lower() in LIST_FILE_SUFFIXES and depth == 0:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            entries = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
            files.extend(_expand([p if Path(p).is_absolute() else path.parent / p for p in entries],
                                 skipped, depth + 1))
        elif path.is_file():
            files.append(path)
        else:
            skipped.append((path, NotDicomError("no such file or folder", path=path)))
    return files


def discover(paths: Sequence[str | os.PathLike[str]]) -> DiscoveryResult:
    """Find the DICOM instances under ``paths`` and group them into studies.

    Args:
        paths: files, folders (recursive; a folder holding a DICOMDIR is read through it),
            DICOMDIR files, and list files (``.txt``/``.lst``: one path per line, relative
            to the list file, ``#`` comments).

    Returns:
        studies in order of first appearance, and the skipped paths with their errors.
    """
    skipped: list[tuple[Path, CalcdxError]] = []
    own_outputs: list[Path] = []
    duplicates: list[tuple[Path, Path]] = []
    seen: set[Path] = set()
    first_file: dict[str, Path] = {}  # SOP Instance UID -> the file found first
    studies: dict[str, Study] = {}
    for path in _expand(paths, skipped):
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        if path.name.upper() == "DICOMDIR":
            continue
        try:
            ds = header_only(path)
        except CalcdxError as exc:
            skipped.append((path, exc))
            continue
        if str(ds.get("SOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY:
            continue
        if is_own_output(ds):
            own_outputs.append(path)
            continue
        sop_uid = str(ds.get("SOPInstanceUID", "") or "")
        if sop_uid in first_file:
            duplicates.append((path, first_file[sop_uid]))
            continue
        if sop_uid:
            first_file[sop_uid] = path
        study_uid = str(ds.get("StudyInstanceUID", "") or "") or f"no-study-uid:{path.parent}"
        study = studies.get(study_uid)
        if study is None:
            study = studies[study_uid] = Study(study_uid, patient_id=str(ds.get("PatientID", "")) or None,
                                               study_date=study_date(ds))
        study.instances.append(
            Instance(
                path=path,
                sop_instance_uid=sop_uid,
                series_instance_uid=str(ds.get("SeriesInstanceUID", "") or ""),
                series_number=_int(ds.get("SeriesNumber")),
                instance_number=_int(ds.get("InstanceNumber")),
                modality=str(ds.get("Modality", "") or ""),
            )
        )
    for study in studies.values():
        study.instances.sort(key=lambda i: (i.series_number, i.series_instance_uid, i.instance_number, str(i.path)))
    if skipped:
        logger.info("discovery skipped %d path(s)", len(skipped))
    if own_outputs:
        logger.info("discovery passed over %d SR and overlay file(s) that calcdx wrote", len(own_outputs))
    for copy, kept in duplicates:
        logger.info("%s: the same SOP Instance UID as %s; passed over", copy, kept)
    return DiscoveryResult(studies=list(studies.values()), skipped=skipped, own_outputs=own_outputs,
                           duplicates=duplicates)


def is_own_output(ds: Dataset) -> bool:
    """Whether ``ds`` is an SR or overlay Secondary Capture that calcdx wrote (its SOP class and Manufacturer):
    never a radiograph to analyse, and no failure either."""
    return (str(ds.get("SOPClassUID", "")) in OWN_OUTPUT_SOP_CLASSES
            and str(ds.get("Manufacturer", "") or "").strip() == MANUFACTURER)
