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
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID

from calcdx.datasets.acceptance import check_projection_radiograph
from calcdx.datasets.j2k_levels import levels_for_spacing
from calcdx.datasets.pixels import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    check_geometry,
    check_voi,
    decode,
    to_display,
)
from calcdx.datasets.radiograph import Radiograph, SpacingSource
from calcdx.errors import (
    CalcdxError,
    ConfigError,
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
MAX_SEQUENCE_DEPTH = 32
"""Sequences nested deeper than this are refused (radiograph headers nest 3-5 deep; the
parser itself recurses and fails near depth 249, pydicom#2330)."""
DEFER_SIZE = 1 << 20
"""Elements above 1 MiB (the pixel data) are read from the file only when used, so a refused
file (a 200 MB CT) never has its pixels loaded."""

PathOrDataset = str | os.PathLike[str] | Dataset


def open_dicom(path: str | os.PathLike[str], *, stop_before_pixels: bool = False) -> Dataset:
    """Parse a DICOM file without ``force``; large elements (pixel data) are deferred.

    Raises:
        NotDicomError: missing file, not a file, or not DICOM.
        InputError: the file cannot be read (permissions).
        NestingTooDeepError: sequences nested deeper than ``MAX_SEQUENCE_DEPTH`` or too
            deep for the parser.
        TruncatedPixelDataError: the file ends inside an element.
        CorruptDicomError: a DICOM header that cannot be parsed.
    """
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise NotDicomError("no such file", path=source)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(source, stop_before_pixels=stop_before_pixels, defer_size=DEFER_SIZE)
    except InvalidDicomError as exc:
        raise NotDicomError(_not_dicom_reason(source, exc), path=source) from exc
    except RecursionError as exc:
        raise NestingTooDeepError("sequences are nested too deeply to parse", path=source) from exc
    except MemoryError as exc:
        raise ImageTooLargeError("a header element is too large to read", path=source) from exc
    except (PermissionError, IsADirectoryError) as exc:
        raise InputError(f"cannot read the file ({exc.strerror})", path=source) from exc
    except Exception as exc:  # pydicom raises many types for corrupt headers
        raise CorruptDicomError(f"DICOM header cannot be parsed ({type(exc).__name__}: {exc})",
                                path=source) from exc
    ended_early = [str(w.message) for w in caught if "end of file" in str(w.message).lower()]
    if ended_early:
        raise TruncatedPixelDataError(f"file ends early ({ended_early[0]})", path=source)
    check_nesting(ds, source)
    return ds


def _not_dicom_reason(source: str, exc: InvalidDicomError) -> str:
    """Why pydicom refused ``source``, in the reader's words (pydicom's own message advises
    ``force=True``, which is not the user's to pass)."""
    size = os.path.getsize(source)
    if size == 0:
        return "not a DICOM file: the file is empty (0 bytes)"
    detail = str(exc).replace(" Use force=True to force reading.", "").strip()
    return f"not a DICOM file ({size} bytes): {detail}"


def sequence_depth(ds: Dataset, limit: int = MAX_SEQUENCE_DEPTH) -> int:
    """Deepest sequence nesting in ``ds`` (0: no sequences), walked without recursion.

    Only sequence elements are converted (in implicit VR files pydicom parses a sequence
    when it is first accessed, so this is where deep or broken nesting shows); deferred
    values (the pixel data) are not read.  The walk stops one level below ``limit``.

    Raises:
        RecursionError / any pydicom error: from converting a broken sequence.
    """
    deepest = 0
    stack: list[tuple[Dataset, int]] = [(ds, 0)]
    while stack:
        current, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > limit:
            break
        for tag in current.keys():  # noqa: SIM118 - iterating a Dataset converts every element
            raw = current.get_item(tag, keep_deferred=True)
            vr = getattr(raw, "VR", None)
            if vr is None or vr == "UN":
                try:
                    vr = dictionary_VR(tag)
                except KeyError:
                    continue
            if vr != "SQ":
                continue
            value = current[tag].value
            if isinstance(value, DicomSequence | list | tuple):
                stack.extend((item, depth + 1) for item in value if isinstance(item, Dataset))
    return deepest


def check_nesting(ds: Dataset, source: str, limit: int = MAX_SEQUENCE_DEPTH) -> None:
    """Refuse sequences nested deeper than ``limit`` or that cannot be parsed.

    Raises:
        NestingTooDeepError: nesting deeper than ``limit``, or too deep for the parser.
        CorruptDicomError: a sequence that cannot be parsed.
    """
    try:
        depth = sequence_depth(ds, limit)
    except RecursionError as exc:
        raise NestingTooDeepError("sequences are nested too deeply to parse", path=source) from exc
    except MemoryError as exc:
        raise ImageTooLargeError("a sequence is too large to read", path=source) from exc
    except Exception as exc:  # pydicom raises many types for corrupt sequences
        raise CorruptDicomError(f"a sequence cannot be parsed ({type(exc).__name__}: {exc})", path=source) from exc
    if depth > limit:
        raise NestingTooDeepError(f"sequences are nested more than {limit} deep", path=source)


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


DATE_KEYWORDS: tuple[str, ...] = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")


def study_date(ds: Dataset) -> str | None:
    """The first valid DA of ``DATE_KEYWORDS`` as ISO ``YYYY-MM-DD``, else None (also for "00000000")."""
    import datetime as dt

    for keyword in DATE_KEYWORDS:
        text = _text(ds, keyword) or ""
        try:
            return dt.datetime.strptime(text[:8], "%Y%m%d").date().isoformat()
        except ValueError:  # empty, "00000000", or not a date
            continue
    return None


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
    max_bytes: int = DEFAULT_MAX_BYTES,
    coarsest_spacing_mm: float | None = None,
) -> list[Radiograph]:
    """Read every frame of a projection radiograph: one ``Radiograph`` per frame.

    Args:
        path_or_dataset: a file path or an already parsed pydicom Dataset.
        default_spacing_mm: spacing to assume (flagged) when the file has none.
        voi: VOI transform: "first" (first VOI LUT item, else first window), "none", or an
            index (LUT items first, then windows; see ``pixels.voi_index``).
        max_pixels: decompression-bomb guard (rows x columns x frames), checked before decoding.
        max_bytes: decompression-bomb guard on the stored values (rows x columns x frames x
            samples x BitsAllocated / 8), checked before decoding.
        coarsest_spacing_mm: decode a JPEG 2000 image at a reduced resolution level (1/2**r per side,
            ``Radiograph.levels_discarded``) while its spacing stays at or below this; None (default):
            full resolution.  Inference passes the model grid's spacing.

    Raises:
        InputError: a subclass naming the file and the reason (see ``calcdx.errors``); never
            anything outside ``CalcdxError``, whatever the bytes of the file.
        ConfigError: ``voi`` or ``default_spacing_mm`` is invalid.
    """
    check_voi(voi)
    if default_spacing_mm is not None and not (
        isinstance(default_spacing_mm, int | float) and 0 < float(default_spacing_mm) <= 10
    ):
        raise ConfigError(f'Argument "default_spacing_mm" should be a spacing in mm in (0, 10], '
                          f"got {default_spacing_mm!r}")
    if coarsest_spacing_mm is not None and not (
        isinstance(coarsest_spacing_mm, int | float) and 0 < float(coarsest_spacing_mm) <= 100
    ):
        raise ConfigError(f'Argument "coarsest_spacing_mm" should be a spacing in mm in (0, 100], '
                          f"got {coarsest_spacing_mm!r}")
    if isinstance(path_or_dataset, Dataset):
        ds = path_or_dataset
        source = str(getattr(ds, "filename", None) or "<dataset>")
    else:
        source = os.fspath(path_or_dataset)
        ds = open_dicom(source)
    try:
        check_nesting(ds, source)
        return _read(ds, source, default_spacing_mm=default_spacing_mm, voi=voi, max_pixels=max_pixels,
                     max_bytes=max_bytes, coarsest_spacing_mm=coarsest_spacing_mm)
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
    max_bytes: int = DEFAULT_MAX_BYTES,
    coarsest_spacing_mm: float | None = None,
) -> Radiograph:
    """Read one frame (default the first) of a projection radiograph; see ``read_radiographs``.

    Raises:
        InputError: as ``read_radiographs``, or ``frame`` beyond the frames of the file.
        ConfigError: an invalid argument.
    """
    frames = read_radiographs(path_or_dataset, default_spacing_mm=default_spacing_mm, voi=voi,
                              max_pixels=max_pixels, max_bytes=max_bytes, coarsest_spacing_mm=coarsest_spacing_mm)
    if not 0 <= frame < len(frames):
        raise InputError(f"frame {frame} requested but the file has {len(frames)}",
                         path=frames[0].source if frames else None)
    return frames[frame]


def _read(ds: Dataset, source: str, *, default_spacing_mm: float | None, voi: str | int,
          max_pixels: int, max_bytes: int, coarsest_spacing_mm: float | None = None) -> list[Radiograph]:
    check_projection_radiograph(ds, source)
    geometry = check_geometry(ds, source, max_pixels=max_pixels, max_bytes=max_bytes)
    spacing, spacing_source = pixel_spacing(ds, default_spacing_mm)
    levels = levels_for_spacing(spacing, coarsest_spacing_mm) if coarsest_spacing_mm else 0
    decoded = decode(ds, source, geometry, reduce_levels=levels)
    stored = decoded.frames
    full_shape = None
    file_spacing = spacing
    if decoded.levels_discarded:
        factor = 1 << decoded.levels_discarded
        full_shape = (geometry.rows, geometry.columns)
        spacing = (spacing[0] * factor, spacing[1] * factor)
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
        "study_date": study_date(ds),
        "patient_age_years": patient_age_years(ds),
        "patient_sex": sex.upper() if sex and sex.upper() in {"M", "F", "O"} else None,
        "manufacturer": _text(ds, "Manufacturer"),
        "presentation_intent": _text(ds, "PresentationIntentType"),
        "transfer_syntax_uid": tsyntax or None,
        "photometric_interpretation": _text(ds, "PhotometricInterpretation"),
        "bits_stored": geometry.bits_stored,
    }
    out: list[Radiograph] = []
    syntax_name = UID(tsyntax).name if tsyntax else "implicit VR little endian (no file meta)"
    decoded_note = f"decoded {syntax_name} with {decoded.decoder}"
    if decoded.levels_discarded:
        level = decoded.levels_discarded
        decoded_note += (f" at 1/{1 << level} resolution ({level} JPEG 2000 level(s) discarded; "
                         f"{stored.shape[1]}x{stored.shape[2]} of {geometry.rows}x{geometry.columns})")
    spacing_note = f"spacing {file_spacing[0]:.4g}x{file_spacing[1]:.4g} mm from {spacing_source.value}"
    for index in range(stored.shape[0]):
        image, applied = to_display(stored[index], ds, source, geometry, voi=voi)
        out.append(Radiograph(image=image, frame_index=index, applied=(decoded_note, *applied, spacing_note),
                              levels_discarded=decoded.levels_discarded, full_shape=full_shape, **common))
    if spacing_source is SpacingSource.ASSUMED:
        logger.info("%s: no valid pixel spacing; assuming %.3g mm", source, spacing[0])
    return out


def decoder_of(radiograph: Radiograph) -> str | None:
    """The pixel decoder that read ``radiograph`` ("native", "pylibjpeg", ...), from its steps."""
    for step in radiograph.applied:
        if step.startswith("decoded ") and " with " in step:
            return step.rsplit(" with ", 1)[1]
    return None


def header_only(path: str | Path) -> Dataset:
    """Parse the header (no pixel data) for discovery and grouping; errors as ``open_dicom``."""
    return open_dicom(path, stop_before_pixels=True)
