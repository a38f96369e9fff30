"""Which DICOM objects calcdx analyses, and the reason it gives for the others.

Accepted: projection radiographs — CR, DX (for presentation and for processing),
mammography and intra-oral X-ray (both are projection radiography and decode the same
way), and greyscale Secondary Capture whose Modality says it is a radiograph (CR, DX, RG,
MG, IO, PX: digitised or exported films; Secondary Capture labelled OT or anything else is
refused, as screenshots and reports are stored that way).  Refused with a reason:
cross-sectional and functional modalities (CT, MR, US, NM, PT, ...) — also under a projection
SOP class whose Modality says CT/MR/US/NM/PT —, colour and palette images (SamplesPerPixel
> 1 or a photometric interpretation other than MONOCHROME1/2), structured reports,
presentation states and every other non-image object.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.uid import UID

from calcdx.errors import NoPixelDataError, NotRadiographError

PROJECTION_SOP_CLASSES: frozenset[str] = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
        "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
        "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image Storage - For Processing
        "1.2.840.10008.5.1.4.1.1.1.2",  # Digital Mammography X-Ray - For Presentation
        "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography X-Ray - For Processing
        "1.2.840.10008.5.1.4.1.1.1.3",  # Digital Intra-Oral X-Ray - For Presentation
        "1.2.840.10008.5.1.4.1.1.1.3.1",  # Digital Intra-Oral X-Ray - For Processing
    }
)

SECONDARY_CAPTURE_SOP_CLASSES: frozenset[str] = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
        "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte SC
        "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word SC
    }
)

PROJECTION_MODALITIES: frozenset[str] = frozenset({"CR", "DX", "RG", "MG", "IO", "PX"})

REFUSED_MODALITIES: dict[str, str] = {
    "CT": "computed tomography",
    "MR": "magnetic resonance",
    "US": "ultrasound",
    "NM": "nuclear medicine",
    "PT": "positron emission tomography",
    "XA": "X-ray angiography (fluoroscopic run)",
    "RF": "radiofluoroscopy",
    "OT": "other",
    "SR": "structured report",
    "PR": "presentation state",
    "KO": "key object selection",
    "SEG": "segmentation",
    "RTSTRUCT": "radiotherapy structure set",
    "ECG": "waveform",
    "DOC": "document",
}

CROSS_SECTIONAL_MODALITIES: frozenset[str] = frozenset({"CT", "MR", "US", "NM", "PT"})
"""Refused even under a projection SOP class: a conflicting label is not trusted."""

PIXEL_DATA_KEYWORDS: tuple[str, ...] = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def describe(ds: Dataset) -> str:
    """A short human description such as ``'CT Image Storage (modality CT)'``."""
    sop = str(ds.get("SOPClassUID", "") or "")
    modality = str(ds.get("Modality", "") or "").strip() or "none"
    name = UID(sop).name if sop else "no SOP Class UID"
    return f"{name} (modality {modality})"


def check_projection_radiograph(ds: Dataset, source: str) -> None:
    """Raise unless ``ds`` is a greyscale projection radiograph with pixel data.

    Raises:
        NotRadiographError: another modality, a non-image object or a colour image.
        NoPixelDataError: a radiograph object without pixel data.
    """
    sop = str(ds.get("SOPClassUID", "") or "")
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if sop in PROJECTION_SOP_CLASSES and modality in CROSS_SECTIONAL_MODALITIES:
        raise NotRadiographError(
            f"conflicting header: {describe(ds)} — a projection SOP class with a {modality} modality; refused",
            path=source,
        )
    if sop in PROJECTION_SOP_CLASSES or (sop in SECONDARY_CAPTURE_SOP_CLASSES and modality in PROJECTION_MODALITIES):
        pass
    elif not sop and modality in PROJECTION_MODALITIES:
        pass  # SOP class missing but the modality is unambiguous (seen in exported films)
    else:
        what = REFUSED_MODALITIES.get(modality)
        detail = f" — {what}" if what else ""
        raise NotRadiographError(
            f"not a projection radiograph: {describe(ds)}{detail}; calcdx analyses CR/DX radiographs only",
            path=source,
        )
    if not any(k in ds for k in PIXEL_DATA_KEYWORDS):
        raise NoPixelDataError(f"{describe(ds)} has no pixel data", path=source)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if samples != 1 or (photometric and photometric not in {"MONOCHROME1", "MONOCHROME2"}):
        raise NotRadiographError(
            f"colour image ({photometric or 'unknown'}, {samples} samples per pixel): "
            "radiographs are greyscale (MONOCHROME1/2)",
            path=source,
        )
