"""``read_radiograph``: a DICOM file (or Dataset) -> validated, decoded ``Radiograph``.

Never reads with ``force=True``: a file without a DICOM preamble or meta header is
refused.  Every failure, whatever the input bytes, is raised as a ``calcdx.errors``
``InputError`` subclass naming the file and the reason.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from calcdx.datasets.acceptance import check_projection_radiograph
from calcdx.datasets.pixels import DEFAULT_MAX_PIXELS, check_geometry, decode, to_display
from calcdx.datasets.radiograph import Radiograph, SpacingSource
from calcdx.errors import (
    CalcdxError,
    CorruptDicomError,
    ImageTooLargeError,
    InputError,
    NestingTooDeepError,
    NotDicomError,
    TruncatedPixelDataError,
)

logger = logging.getLogger(__name__)

DEFAULT_SPACING_MM = 0.15
"""Spacing assumed (and flagged ``SpacingSource.ASSUMED``) when a file has no valid spacing."""

PathOrDataset = str | os.PathLike[str] | Dataset


def open_dicom(path: str | os.PathLike[str], *, stop_before_pixels: bool = False) -> Dataset:
    """Parse a DICOM file without ``force``.

    Raises:
        NotDicomError: missing file, not a file, or not DICOM.
        NestingTooDeepError: sequences nested too deep to parse.
        CorruptDicomError: a DICOM header that cannot be parsed.
    """
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise NotDicomError("no such file", path=source)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(source, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError as exc:
        raise NotDicomError(f"not a DICOM file ({exc})", path=source) from exc
    except RecursionError as exc:
        raise NestingTooDeepError("sequences are nested too deeply to parse", path=source) from exc
    except MemoryError as exc:
        raise ImageTooLargeError("a header element is too large to read", path=source) from exc
    except Exception as exc:  # pydicom raises many types for corrupt headers
        raise CorruptDicomError(f"DICOM header cannot be parsed ({type(exc).__name__}: {exc})",
                                path=source) from exc
    ended_early = [str(w.message) for w in caught if "end of file" in str(w.message).lower()]
    if ended_early:
        raise TruncatedPixelDataError(f"file ends early ({ended_early[0]})", path=source)
    return ds


def _positive_pair(value: object) -> tuple[float, float] | None:
    try:
        items = [float(v) for v in value]  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    if len(items) != 2 or not all(np.isfinite(items)) or min(items) <= 0 or max(items) > 10:
        return None
    return (items[0], items[1])


def pixel_spacing(ds: Dataset, default_mm: float | None = None) -> tuple[tuple[float, float], SpacingSource]:
    """Spacing in mm at the object plane and where it came from.

    Order: PixelSpacing; ImagerPixelSpacing divided by EstimatedRadiographicMagnificationFactor
    (1 when absent); NominalScannedPixelSpacing; else ``default_mm`` (or
    ``DEFAULT_SPACING_MM``) flagged ``ASSUMED``.  Zero, negative, non-numeric or absurd
    (> 10 mm) values are invalid and fall through.
    """
    pair = _positive_pair(ds.get("PixelSpacing"))
    if pair:
        return pair, SpacingSource.PIXEL_SPACING
    pair = _positive_pair(ds.get("ImagerPixelSpacing"))
    if pair:
        try:
            magnification = float(ds.get("EstimatedRadiographicMagnificationFactor", 1.0) or 1.0)
        except (TypeError, ValueError):
            magnification = 1.0
        if not (np.isfinite(magnification) and 0.5 <= magnification <= 3.0):
            magnification = 1.0
        return (pair[0] / magnification, pair[1] / magnification), SpacingSource.IMAGER_PIXEL_SPACING
    pair = _positive_pair(ds.get("NominalScannedPixelSpacing"))
    if pair:
        return pair, SpacingSource.NOMINAL_SCANNED
    value = DEFAULT_SPACING_MM if default_mm is None else float(default_mm)
    return (value, value), SpacingSource.ASSUMED


_AGE = re.compile(r"^(\d{1,3})([DWMY])$")


def patient_age_years(ds: Dataset) -> float | None:
    """PatientAge ("045Y", "006M", "012W", "003D") in years, else None."""
    match = _AGE.match(str(ds.get("PatientAge", "") or "").strip().upper())
    if not match:
        return None
    n, unit = int(match.group(1)), match.group(2)
    return {"Y": n, "M": n / 12, "W": n / 52.1775, "D": n / 365.25}[unit]


def _text(ds: Dataset, keyword: str) -> str | None:
    try:
        value = ds.get(keyword)
    except Exception:  # a corrupt element must not stop the read
        return None
    text = str(value).strip() if value is not None else ""
    return text or None


def read_radiographs(
    path_or_dataset: PathOrDataset,
    *,
    default_spacing_mm: float | None = None,
    voi: str | int = "first",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[Radiograph]:
    """Read every frame of a projection radiograph: one ``Radiograph`` per frame.

    Args:
        path_or_dataset: a file path or an already parsed pydicom Dataset.
        default_spacing_mm: spacing to assume (flagged) when the file has none.
        voi: VOI transform: "first" (first VOI LUT item, else first window), "none", or an index.
        max_pixels: decompression-bomb guard (rows x columns x frames).

    Raises:
        InputError: a subclass naming the file and the reason (see ``calcdx.errors``).
    """
    if isinstance(path_or_dataset, Dataset):
        ds = path_or_dataset
        source = str(getattr(ds, "filename", None) or "<dataset>")
    else:
        source = os.fspath(path_or_dataset)
        ds = open_dicom(source)
    try:
        return _read(ds, source, default_spacing_mm=default_spacing_mm, voi=voi, max_pixels=max_pixels)
    except CalcdxError:
        raise
    except RecursionError as exc:
        raise NestingTooDeepError("sequences are nested too deeply to parse", path=source) from exc
    except MemoryError as exc:
        raise ImageTooLargeError("not enough memory to decode", path=source) from exc
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # anything else (incl. Rust decoder panics) is a corrupt file, never a crash
        raise CorruptDicomError(f"{type(exc).__name__}: {exc}", path=source) from exc


def read_radiograph(
    path_or_dataset: PathOrDataset,
    *,
    default_spacing_mm: float | None = None,
    voi: str | int = "first",
    frame: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Radiograph:
    """Read one frame (default the first) of a projection radiograph; see ``read_radiographs``."""
    frames = read_radiographs(path_or_dataset, default_spacing_mm=default_spacing_mm, voi=voi,
                              max_pixels=max_pixels)
    if not 0 <= frame < len(frames):
        raise InputError(f"frame {frame} requested but the file has {len(frames)}",
                         path=frames[0].source if frames else None)
    return frames[frame]


def _read(ds: Dataset, source: str, *, default_spacing_mm: float | None, voi: str | int,
          max_pixels: int) -> list[Radiograph]:
    check_projection_radiograph(ds, source)
    geometry = check_geometry(ds, source, max_pixels=max_pixels)
    stored = decode(ds, source, geometry)
    spacing, spacing_source = pixel_spacing(ds, default_spacing_mm)
    tsyntax = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else None
    sex = _text(ds, "PatientSex")
    common = {
        "pixel_spacing_mm": spacing,
        "spacing_source": spacing_source,
        "source": source,
        "sop_instance_uid": _text(ds, "SOPInstanceUID") or "",
        "series_instance_uid": _text(ds, "SeriesInstanceUID") or "",
        "study_instance_uid": _text(ds, "StudyInstanceUID") or "",
        "sop_class_uid": _text(ds, "SOPClassUID") or "",
        "modality": (_text(ds, "Modality") or "").upper(),
        "body_part": _text(ds, "BodyPartExamined"),
        "view_position": _text(ds, "ViewPosition"),
        "laterality": _text(ds, "ImageLaterality") or _text(ds, "Laterality"),
        "patient_id": _text(ds, "PatientID"),
        "patient_age_years": patient_age_years(ds),
        "patient_sex": sex.upper() if sex and sex.upper() in {"M", "F", "O"} else None,
        "manufacturer": _text(ds, "Manufacturer"),
        "presentation_intent": _text(ds, "PresentationIntentType"),
        "transfer_syntax_uid": tsyntax or None,
        "photometric_interpretation": _text(ds, "PhotometricInterpretation"),
        "bits_stored": geometry.bits_stored,
    }
    out: list[Radiograph] = []
    spacing_note = f"spacing {spacing[0]:.4g}x{spacing[1]:.4g} mm from {spacing_source.value}"
    for index in range(stored.shape[0]):
        image, applied = to_display(stored[index], ds, source, geometry, voi=voi)
        out.append(Radiograph(image=image, frame_index=index, applied=(*applied, spacing_note), **common))
    if spacing_source is SpacingSource.ASSUMED:
        logger.info("%s: no valid pixel spacing; assuming %.3g mm", source, spacing[0])
    return out


def header_only(path: str | Path) -> Dataset:
    """Parse the header (no pixel data) for discovery and grouping; errors as ``open_dicom``."""
    return open_dicom(path, stop_before_pixels=True)
