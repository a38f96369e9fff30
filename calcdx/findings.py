"""The finding: one calcification as the model saw it.  One definition, in one place.

Produced by ``calcdx.inference.findings`` (from probability maps) and by the simulator's
ground truth; consumed by the rule layer (``calcdx.rules``), the writers (JSON, CSV,
DICOM SR, overlays) and the PACS front ends.  Units are in the field names: ``_px``
is pixels of the source image (row, column), ``_mm`` millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from calcdx.taxonomy import LocationClass, Pattern


class OperatingPoint(StrEnum):
    """Which of the model card's two thresholds a probability reached."""

    DEFINITE = "definite"  # high-specificity threshold
    POSSIBLE = "possible"  # high-sensitivity threshold
    BELOW = "below"  # reported only when asked for (e.g. rule-layer exploration)


class Margin(StrEnum):
    WELL_DEFINED = "well_defined"
    ILL_DEFINED = "ill_defined"
    UNKNOWN = "unknown"


class Morphology(StrEnum):
    """Shape descriptors the rule layer reasons with (seed 003's vocabulary)."""

    OVAL = "oval"  # dense homogeneous oval deposit (HADD formative / resting)
    FLUFFY = "fluffy"  # ill-defined, cloud-like (HADD resorptive)
    COMET_TAIL = "comet_tail"
    LINEAR = "linear"  # thin line, e.g. parallel to subchondral bone (CPPD)
    TRIANGULAR = "triangular"  # meniscal / TFCC shaggy triangle
    MULTILOCULATED = "multiloculated"  # lobules with septa (tumoral calcinosis)
    FLUID_LEVEL = "fluid_level"  # fluid-calcium level
    ROUND_RIM_LUCENT_CENTRE = "round_rim_lucent_centre"  # phlebolith
    LAMINATED = "laminated"
    ZONAL_PERIPHERAL = "zonal_peripheral"  # dense rim, lucent centre (mature heterotopic ossification)
    CENTRAL_MINERALISATION = "central_mineralisation"  # tumour matrix, sarcoma
    FAINT_FLECKS = "faint_flecks"  # early myositis ossificans
    SHEET = "sheet"  # sheet / lace-like along fascial planes (calcinosis universalis)
    NODULAR = "nodular"  # popcorn subcutaneous nodules
    TRAM_TRACK = "tram_track"  # medial arterial calcification
    IRREGULAR_INTIMAL = "irregular_intimal"
    RING_AND_ARC = "ring_and_arc"  # chondroid matrix / osteochondromatosis bodies
    CIGAR = "cigar"  # cysticercosis
    CLEFT_FROM_BONE = "cleft_from_bone"  # separated from cortex by a lucent cleft
    CONTINUOUS_WITH_BONE = "continuous_with_bone"  # enthesophyte / osteophyte


@dataclass(frozen=True, slots=True)
class Finding:
    """One calcification (or cluster of them) found on one image.

    Attributes:
        pattern: the model class.
        probability: calibrated probability in [0, 1] that this pattern is present here.
        operating_point: the model-card threshold reached by ``probability``.
        bbox_px: (row_min, col_min, row_max, col_max) in source-image pixels, max exclusive.
        centroid_px: (row, col) in source-image pixels.
        long_axis_mm / short_axis_mm: extent along the principal axes, millimetres.
        area_mm2: area of the thresholded region, square millimetres.
        relative_density: mean image value inside minus a ring around it, in image units [0, 1].
        margin: well or ill defined edge.
        margin_probability: probability that the margin is ill defined, where a learned margin head gave
            the margin (HADD); None where the margin comes from the edge measure.
        count: number of separate deposits when clustered (1 for a single one).
        location_class: tendon, intra-articular, periarticular, ... (``LocationClass``).
        site: anatomical site where it can be told ("supraspinatus tendon"), else None.
        site_probability: the site head's probability for a named tendon (HADD); None for a generic site.
        body_part: the region (``calcdx.taxonomy.Region`` value) or DICOM BodyPartExamined.
        morphology: shape descriptors (``Morphology`` values).
        distribution: "single", "clustered", "diffuse" or "symmetric"; None when unknown.
        pixel_spacing_mm: (row, col) spacing used for the mm values.
        outline_px: closed polygon, (row, col) source-image pixels (centres at integers), first point not
            repeated, around what the size was measured on (the deposit's border, or the convex hull of
            its pieces); empty when not measured.
        long_axis_px: the long axis' two ends, (row, col) source-image pixels; None when not measured.
    """

    pattern: Pattern
    probability: float
    operating_point: OperatingPoint = OperatingPoint.POSSIBLE
    bbox_px: tuple[int, int, int, int] = (0, 0, 0, 0)
    centroid_px: tuple[float, float] = (0.0, 0.0)
    long_axis_mm: float = 0.0
    short_axis_mm: float = 0.0
    area_mm2: float = 0.0
    relative_density: float = 0.0
    margin: Margin = Margin.UNKNOWN
    margin_probability: float | None = None
    count: int = 1
    location_class: LocationClass = LocationClass.UNKNOWN
    site: str | None = None
    site_probability: float | None = None
    body_part: str | None = None
    morphology: tuple[Morphology, ...] = field(default_factory=tuple)
    distribution: str | None = None
    pixel_spacing_mm: tuple[float, float] = (1.0, 1.0)
    outline_px: tuple[tuple[float, float], ...] = ()
    long_axis_px: tuple[tuple[float, float], tuple[float, float]] | None = None

    @property
    def centroid_mm(self) -> tuple[float, float]:
        """Centroid in millimetres from the image's top-left corner (row, col)."""
        return (self.centroid_px[0] * self.pixel_spacing_mm[0], self.centroid_px[1] * self.pixel_spacing_mm[1])

    @property
    def bbox_mm(self) -> tuple[float, float, float, float]:
        """Bounding box in millimetres (row_min, col_min, row_max, col_max)."""
        r, c = self.pixel_spacing_mm
        b = self.bbox_px
        return (b[0] * r, b[1] * c, b[2] * r, b[3] * c)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (enums as their values, tuples as lists, mm geometry included), equal to
        ``dataclasses.asdict`` converted (a test) without its deep copy of every outline point."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["pattern"] = str(self.pattern)
        out["operating_point"] = str(self.operating_point)
        out["margin"] = str(self.margin)
        out["location_class"] = str(self.location_class)
        out["morphology"] = [str(m) for m in self.morphology]
        for key in ("bbox_px", "centroid_px", "pixel_spacing_mm"):
            out[key] = list(out[key])
        out["outline_px"] = [list(point) for point in self.outline_px]
        out["long_axis_px"] = None if self.long_axis_px is None else [list(point) for point in self.long_axis_px]
        out["centroid_mm"] = list(self.centroid_mm)
        out["bbox_mm"] = list(self.bbox_mm)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        """Inverse of :meth:`to_dict`; unknown keys (e.g. ``centroid_mm``) are ignored."""
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        kw["pattern"] = Pattern(kw["pattern"])
        if "operating_point" in kw:
            kw["operating_point"] = OperatingPoint(kw["operating_point"])
        if "margin" in kw:
            kw["margin"] = Margin(kw["margin"])
        if "location_class" in kw:
            kw["location_class"] = LocationClass(kw["location_class"])
        if "morphology" in kw:
            kw["morphology"] = tuple(Morphology(m) for m in kw["morphology"])
        for key in ("bbox_px", "centroid_px", "pixel_spacing_mm"):
            if key in kw:
                kw[key] = tuple(kw[key])
        for key in ("outline_px", "long_axis_px"):
            if kw.get(key) is not None:
                kw[key] = tuple(tuple(point) for point in kw[key])
        return cls(**kw)
