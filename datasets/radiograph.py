"""The ``Radiograph``: one decoded projection image and the metadata later stages need."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np


class SpacingSource(StrEnum):
    """Where ``Radiograph.pixel_spacing_mm`` came from."""

    PIXEL_SPACING = "PixelSpacing"
    IMAGER_PIXEL_SPACING = "ImagerPixelSpacing"  # corrected by EstimatedRadiographicMagnificationFactor
    NOMINAL_SCANNED = "NominalScannedPixelSpacing"
    ASSUMED = "assumed"  # configurable default: no valid spacing in the file


@dataclass(frozen=True, slots=True)
class Radiograph:
    """A projection radiograph ready for analysis.

    Attributes:
        image: float32 array (rows, cols) in [0, 1]; bright = dense whatever the
            photometric interpretation of the file.
        pixel_spacing_mm: (row, col) spacing in millimetres at the object plane where known.
        spacing_source: which attribute the spacing came from (``ASSUMED`` when defaulted).
        source: file path (or "<dataset>") the image was read from.
        frame_index: frame number for multi-frame files (0 for single frame).
        sop_instance_uid / series_instance_uid / study_instance_uid / sop_class_uid: identity.
        modality, body_part, view_position, laterality, patient_id, patient_age_years, patient_sex,
        manufacturer, presentation_intent: metadata, None when absent.
        study_date: the study's date as ISO ``YYYY-MM-DD`` (Study Date, else Series, Acquisition or
            Content Date), None when absent or not a valid date: what follow-up comparison orders by.
        transfer_syntax_uid: how the pixels were encoded.
        applied: human-readable steps the reader applied (LUTs, inversion, masking, ...).
        bits_stored, photometric_interpretation: as in the file.
        levels_discarded: JPEG 2000 resolution levels the decoder skipped (0: ``image`` is the full
            image; r: ``image`` is 1/2**r of it per side and ``pixel_spacing_mm`` is its own spacing).
        full_shape: (rows, cols) of the stored image in the file (None: same as ``shape``).
    """

    image: np.ndarray
    pixel_spacing_mm: tuple[float, float]
    spacing_source: SpacingSource
    source: str
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    sop_class_uid: str
    modality: str
    frame_index: int = 0
    body_part: str | None = None
    view_position: str | None = None
    laterality: str | None = None
    patient_id: str | None = None
    study_date: str | None = None
    patient_age_years: float | None = None
    patient_sex: str | None = None
    manufacturer: str | None = None
    presentation_intent: str | None = None
    transfer_syntax_uid: str | None = None
    photometric_interpretation: str | None = None
    bits_stored: int | None = None
    applied: tuple[str, ...] = field(default_factory=tuple)
    levels_discarded: int = 0
    full_shape: tuple[int, int] | None = None

    @property
    def decimation(self) -> int:
        """Stored pixels per ``image`` pixel along each axis (1 unless levels were discarded)."""
        return 1 << self.levels_discarded

    @property
    def source_shape(self) -> tuple[int, int]:
        """(rows, cols) of the image in the file: the pixel grid DICOM coordinates refer to."""
        return self.full_shape or self.shape

    @property
    def source_pixel_spacing_mm(self) -> tuple[float, float]:
        """Spacing of the file's pixel grid (``pixel_spacing_mm`` / ``decimation``)."""
        d = self.decimation
        return (self.pixel_spacing_mm[0] / d, self.pixel_spacing_mm[1] / d)

    def to_source_px(self, row: float, col: float) -> tuple[float, float]:
        """A point in ``image`` pixel coordinates (pixel centres at integers) on the file's pixel grid."""
        d = self.decimation
        return ((row + 0.5) * d - 0.5, (col + 0.5) * d - 0.5)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) in pixels."""
        return (int(self.image.shape[0]), int(self.image.shape[1]))

    @property
    def size_mm(self) -> tuple[float, float]:
        """Physical size (height, width) in millimetres."""
        return (self.shape[0] * self.pixel_spacing_mm[0], self.shape[1] * self.pixel_spacing_mm[1])
