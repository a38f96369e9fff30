"""Probability maps -> ``Finding`` objects with measurements in millimetres.

For each pattern whose calibrated image probability reaches the card's "possible"
threshold, connected regions of the map above that threshold become candidate findings.
Each region is measured on the *source* image: inside its box, pixels that stand out
from a smoothed local background are the deposit; their principal axes give long and
short axis (mm), their mean minus a surrounding ring the relative density, the edge
gradient the margin, and their separate pieces the count.  Location class and site are
the pattern's typical compartment for the body part (the model does not segment
anatomy); the finding says so in ``site`` only where the body part makes it specific.
For HADD, two learned heads (``calcdx.inference.margin``, ``calcdx.inference.site``), where
given, read the margin and name the tendon from a field of the source image around the deposit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from calcdx.datasets.radiograph import Radiograph
from calcdx.findings import Finding, Margin, Morphology, OperatingPoint
from calcdx.gaussian import gaussian_blur, gaussian_gradient_magnitude
from calcdx.models.card import ModelCard
from calcdx.morphology import binary_dilation, binary_erosion, binary_opening, label
from calcdx.pieces import nearest_label, outline, principal_axes
from calcdx.taxonomy import LocationClass, Pattern

if TYPE_CHECKING:
    from calcdx.inference.extent import ExtentHead
    from calcdx.inference.margin import MarginHead
    from calcdx.inference.site import CppdSiteHead, SiteHead

MAX_FINDINGS_PER_PATTERN = 5
CPPD_TENDON = "tendon"
"""The CPPD site head's class for crystal deposition in a tendon (location class ``tendon``); its other
classes are cartilage sites (hyaline cartilage, meniscus, triangular fibrocartilage complex, labrum,
symphysis: location class ``intra_articular``)."""

TYPICAL_LOCATION: dict[Pattern, LocationClass] = {
    Pattern.HADD: LocationClass.TENDON,
    Pattern.CPPD: LocationClass.INTRA_ARTICULAR,
    Pattern.TUMORAL_CALCINOSIS: LocationClass.PERIARTICULAR,
    Pattern.PHLEBOLITH: LocationClass.VASCULAR,
    Pattern.MYOSITIS_OSSIFICANS: LocationClass.INTRAMUSCULAR,
    Pattern.CALCINOSIS_UNIVERSALIS: LocationClass.INTRAMUSCULAR,
}

_SITE_BY_BODY_PART: dict[tuple[Pattern, str], str] = {
    (Pattern.HADD, "shoulder"): "rotator cuff tendon",
    (Pattern.HADD, "hip"): "gluteal tendon",
    (Pattern.HADD, "wrist"): "wrist tendon",
    (Pattern.HADD, "hand"): "wrist tendon",
    (Pattern.CPPD, "knee"): "knee cartilage / menisci",
    (Pattern.CPPD, "wrist"): "triangular fibrocartilage / wrist cartilage",
    (Pattern.CPPD, "hand"): "triangular fibrocartilage / wrist cartilage",
    (Pattern.CPPD, "pelvis"): "symphysis pubis / hip labrum",
    (Pattern.PHLEBOLITH, "pelvis"): "pelvic veins",
}

_BODY_PART_ALIASES = {"SHOULDER": "shoulder", "KNEE": "knee", "PELVIS": "pelvis", "HIP": "pelvis", "HAND": "hand",
                      "WRIST": "wrist", "THIGH": "thigh", "LEG": "thigh", "hip_pelvis": "pelvis",
                      "hand_wrist": "wrist", "thigh_leg": "thigh"}


def normalise_body_part(body_part: str | None) -> str | None:
    """DICOM BodyPartExamined or simulator region -> shoulder/knee/pelvis/hand/wrist/thigh."""
    if not body_part:
        return None
    return _BODY_PART_ALIASES.get(body_part, _BODY_PART_ALIASES.get(body_part.upper(), body_part.lower()))


@dataclass(frozen=True)
class Measured:
    long_mm: float
    short_mm: float
    area_mm2: float
    density: float
    margin: Margin
    count: int
    centroid_px: tuple[float, float]
    bbox_px: tuple[int, int, int, int]
    outline_px: np.ndarray  # [N, 2] (row, col) on the image measured: the polygon the size was measured on
    long_axis_px: tuple[tuple[float, float], tuple[float, float]]


SHARP_EDGE = 0.35
"""Mean edge gradient (1-pixel Gaussian) over the deposit's density above which its margin is well defined.
``calcdx score`` measures how well this tells formative from resorptive HADD (docs/inference.md)."""


def measure(image: np.ndarray, box: tuple[int, int, int, int], spacing: tuple[float, float]) -> Measured:
    """Measure the deposit inside ``box`` (source pixels, max exclusive) of ``image``.

    The deposit is what stands out of a smoothed local background inside the box (Otsu's threshold).
    Of its pieces, the one nearest the box's centre (where the model points) is kept, and the others
    unless the box's edge cuts them: a bone edge or a broad band the box crosses is not the deposit.
    """
    r0, c0, r1, c1 = box
    pad = max(4, (r1 - r0) // 3, (c1 - c0) // 3)
    row0, col0 = max(r0 - pad, 0), max(c0 - pad, 0)
    row1, col1 = min(r1 + pad, image.shape[0]), min(c1 + pad, image.shape[1])
    patch = image[row0:row1, col0:col1].astype(np.float32)
    sigma = max(3.0, 0.6 * max(r1 - r0, c1 - c0))
    # the local background; a broad sigma (large deposits, sheets of calcinosis) is blurred on an
    # area-averaged copy at 8 px per sigma: equal to the direct blur to ~1e-3, whatever the size
    residual = patch - gaussian_blur(patch, sigma, border="replicate", truncate=4.0)
    inner = np.zeros(patch.shape, bool)
    inner[r0 - row0:r1 - row0, c0 - col0:c1 - col0] = True
    values = residual[inner]
    thr = otsu_threshold(values) if values.size else 0.0
    deposit = (residual > thr) & inner
    deposit = binary_opening(deposit) if deposit.sum() > 20 else deposit
    if deposit.sum() < 2:
        deposit = inner
    box_edge = inner & ~binary_erosion(inner)
    deposit = _pieces_in_box(deposit, box_edge, ((r0 + r1 - 1) / 2 - row0, (c0 + c1 - 1) / 2 - col0))
    labels, n = label(deposit)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]  # pixels per deposit
    count = int((sizes >= max(3, 0.05 * sizes.max())).sum()) if n else 1
    rows, cols = np.nonzero(deposit)
    axes = principal_axes(deposit, spacing)
    (a_row, a_col), (b_row, b_col) = axes.long_ends_px
    ring = binary_dilation(deposit, iterations=3) & ~deposit
    density = float(patch[deposit].mean() - (patch[ring].mean() if ring.any() else patch.mean()))
    return Measured(long_mm=axes.long_mm, short_mm=axes.short_mm,
                    area_mm2=float(deposit.sum() * spacing[0] * spacing[1]),
                    density=density, margin=_margin(patch, deposit, box_edge, density), count=max(count, 1),
                    centroid_px=(float(rows.mean() + row0), float(cols.mean() + col0)),
                    bbox_px=(int(rows.min() + row0), int(cols.min() + col0), int(rows.max() + row0 + 1),
                             int(cols.max() + col0 + 1)),
                    outline_px=outline(deposit) + np.array([row0, col0]),
                    long_axis_px=((a_row + row0, a_col + col0), (b_row + row0, b_col + col0)))


def _pieces_in_box(deposit: np.ndarray, box_edge: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """The piece of ``deposit`` nearest ``centre`` and every piece the box's edge does not cut."""
    labels, n = label(deposit)
    if n <= 1:
        return deposit
    nearest = nearest_label(labels, centre)  # as ndimage.minimum then argmin chose, without its per-label argsort
    cut = np.zeros(n + 1, bool)
    cut[np.unique(labels[box_edge & deposit])] = True
    cut[0] = False
    keep = ~cut
    keep[0], keep[nearest] = False, True
    return keep[labels]


def _margin(patch: np.ndarray, deposit: np.ndarray, box_edge: np.ndarray, density: float) -> Margin:
    """Well defined when the deposit's edge gradient, relative to its density, exceeds ``SHARP_EDGE``;
    the edge is the deposit's own (not where the box's edge cuts it)."""
    grad = gaussian_gradient_magnitude(patch, 1.0)
    edge = binary_dilation(deposit) & ~binary_erosion(deposit) & ~binary_dilation(box_edge, iterations=2)
    sharpness = float(grad[edge].mean() / max(abs(density), 1e-3)) if edge.any() else 0.0
    return Margin.WELL_DEFINED if sharpness > SHARP_EDGE else Margin.ILL_DEFINED


def otsu_threshold(values: np.ndarray, bins: int = 64) -> float:
    """Otsu's threshold of ``values`` (maximises the between-class variance)."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(np.float64)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = ((hist * centres).sum() - np.cumsum(hist * centres)) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(centres[int(np.argmax(between[:-1]))]) if len(between) > 1 else float(values.mean())


def describe_morphology(pattern: Pattern, m: Measured) -> tuple[Morphology, ...]:
    """Shape descriptors measurable from the deposit (never invented from the pattern alone)."""
    elongation = m.long_mm / max(m.short_mm, 1e-3)
    out: list[Morphology] = []
    if elongation >= 3.5:
        out.append(Morphology.LINEAR)
    elif m.margin is Margin.WELL_DEFINED and elongation < 2.5:
        out.append(Morphology.OVAL)
    elif m.margin is Margin.ILL_DEFINED:
        out.append(Morphology.FLUFFY)
    if m.count >= 3 and pattern in (Pattern.TUMORAL_CALCINOSIS,):
        out.append(Morphology.MULTILOCULATED)
    if m.count >= 4 and pattern is Pattern.CALCINOSIS_UNIVERSALIS:
        out.append(Morphology.SHEET)
    return tuple(out)


def operating_point(card: ModelCard, pattern: str, probability: float) -> OperatingPoint:
    try:
        if probability >= card.threshold(pattern, "definite"):
            return OperatingPoint.DEFINITE
        if probability >= card.threshold(pattern, "possible"):
            return OperatingPoint.POSSIBLE
    except (KeyError, ValueError):
        return OperatingPoint.POSSIBLE if probability >= 0.5 else OperatingPoint.BELOW
    return OperatingPoint.BELOW


EXTENT_HEAD_LEAST_FRACTION = 0.25
EXTENT_HEAD_CHECKED_FROM_MM = 15.0


def _head_missed_large_deposit(head_long_mm: float, classical_long_mm: float) -> bool:
    """Whether the extent head's outline is under ``EXTENT_HEAD_LEAST_FRACTION`` of a classical long axis of
    ``EXTENT_HEAD_CHECKED_FROM_MM`` or more: the head, trained on deposits up to about 20 mm in a 32 mm field,
    can find only a sliver of a larger one (a 27 mm deposit measured 0.4 mm, seed 8484).  The classical
    measurement is kept then.  Otherwise the head is trusted: where it measures much less than the classical
    box, the box is usually wrong (5-8 mm deposits measured 13-17 mm in the box and right by the head, at
    0.43-0.49 of the box's length, same seed)."""
    return (classical_long_mm >= EXTENT_HEAD_CHECKED_FROM_MM
            and head_long_mm < EXTENT_HEAD_LEAST_FRACTION * classical_long_mm)


def extract_findings(radiograph: Radiograph, card: ModelCard, image_probabilities: np.ndarray,
                     prob_maps: np.ndarray, grid_spacing_mm: float, *, margin_head: MarginHead | None = None,
                     site_head: SiteHead | None = None, extent_head: ExtentHead | None = None,
                     cppd_site_head: CppdSiteHead | None = None) -> list[Finding]:
    """Findings for one image from calibrated image probabilities [C] and maps [C, h, w].  With a
    ``margin_head``, a HADD finding's margin is the head's (else the edge measure's); with a
    ``site_head``, a HADD finding names its tendon where the head is sure enough (else the generic
    site of the body part); with an ``extent_head``, a HADD finding's long and short axis and area are
    measured on the head's outline (else on ``measure``'s threshold); with a ``cppd_site_head``, a CPPD
    finding names its cartilage site, or a tendon (location class ``tendon``), where the head is sure enough."""
    findings: list[Finding] = []
    scale = (card.stride * grid_spacing_mm / radiograph.pixel_spacing_mm[0],
             card.stride * grid_spacing_mm / radiograph.pixel_spacing_mm[1])
    body = normalise_body_part(radiograph.body_part)
    for c, name in enumerate(card.classes):
        pattern = Pattern(name)
        p_image = float(image_probabilities[c])
        if operating_point(card, name, p_image) is OperatingPoint.BELOW:
            continue
        pmap = prob_maps[c]
        try:
            thr = card.threshold(name, "possible")
        except (KeyError, ValueError):
            thr = 0.5
        mask = pmap >= max(thr, 0.5 * float(pmap.max()))  # tight regions around each peak
        labels, n = label(mask)
        if n == 0:
            continue
        objects = ndimage.find_objects(labels)
        # each region's peak, read in its own box: ndimage.maximum sorts every pixel by label (0.25 against
        # 0.03 ms per image on the bundled examples, the same values)
        peaks = np.array([pmap[sl][labels[sl] == k + 1].max() for k, sl in enumerate(objects)], dtype=np.float64)
        order = np.argsort(peaks)[::-1][:MAX_FINDINGS_PER_PATTERN]
        for k in order:
            sl = objects[int(k)]
            box = (int(sl[0].start * scale[0]), int(sl[1].start * scale[1]),
                   min(int(np.ceil(sl[0].stop * scale[0])), radiograph.shape[0]),
                   min(int(np.ceil(sl[1].stop * scale[1])), radiograph.shape[1]))
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                continue
            probability = min(float(peaks[k]), p_image) if k != order[0] else p_image
            op = operating_point(card, name, probability)
            if op is OperatingPoint.BELOW:  # decided before measuring: measuring is the costly part
                continue
            m = measure(radiograph.image, box, radiograph.pixel_spacing_mm)
            if extent_head is not None and pattern is Pattern.HADD:
                head_extent = extent_head.extent(radiograph.image, m.centroid_px, radiograph.pixel_spacing_mm)
                if head_extent is not None and not _head_missed_large_deposit(head_extent.long_mm, m.long_mm):
                    m = replace(m, long_mm=head_extent.long_mm, short_mm=head_extent.short_mm,
                                area_mm2=head_extent.area_mm2,
                                bbox_px=_enclosing(m.bbox_px, head_extent.outline_px, radiograph.shape),
                                outline_px=head_extent.outline_px, long_axis_px=head_extent.long_axis_px)
            margin_probability = None
            if margin_head is not None and pattern is Pattern.HADD:
                margin_probability = round(margin_head.probability_ill_defined(
                    radiograph.image, m.centroid_px, radiograph.pixel_spacing_mm), 4)
                # decided on the probability reported, so the result agrees with the card's threshold
                m = replace(m, margin=margin_head.margin(margin_probability))
            site, site_probability = _SITE_BY_BODY_PART.get((pattern, body or "")), None
            location = TYPICAL_LOCATION[pattern]
            head = site_head if pattern is Pattern.HADD else cppd_site_head if pattern is Pattern.CPPD else None
            if head is not None:
                sites = head.site_probabilities(radiograph.image, m.centroid_px, radiograph.pixel_spacing_mm, body)
                # named on the probabilities reported, so the result agrees with the card's threshold
                named, p_site = head.site({name: round(p, 4) for name, p in sites.items()})
                if named is not None and p_site is not None:
                    site, site_probability = named, p_site
                    if pattern is Pattern.CPPD and named == CPPD_TENDON:
                        location = LocationClass.TENDON
            bbox_px, centroid_px = _on_source_grid(radiograph, m.bbox_px, m.centroid_px)
            outline_px, long_axis_px = (_points_on_source_grid(radiograph, points)
                                        for points in (m.outline_px, m.long_axis_px))
            findings.append(Finding(
                pattern=pattern, probability=round(probability, 4), operating_point=op, bbox_px=bbox_px,
                centroid_px=centroid_px, long_axis_mm=round(m.long_mm, 2), short_axis_mm=round(m.short_mm, 2),
                area_mm2=round(m.area_mm2, 2), relative_density=round(m.density, 4), margin=m.margin,
                margin_probability=margin_probability, count=m.count,
                location_class=location, site=site, site_probability=site_probability,
                body_part=body, morphology=describe_morphology(pattern, m),
                distribution="clustered" if m.count > 1 else "single",
                pixel_spacing_mm=radiograph.source_pixel_spacing_mm, outline_px=outline_px,
                long_axis_px=(long_axis_px[0], long_axis_px[1]),
            ))
    return findings


def _on_source_grid(radiograph: Radiograph, bbox_px: tuple[int, int, int, int],
                    centroid_px: tuple[float, float]) -> tuple[tuple[int, int, int, int], tuple[float, float]]:
    """Box and centroid measured on ``radiograph.image`` in the file's pixel coordinates (what the SR and
    the JSON report), which differ when JPEG 2000 levels were discarded at decoding."""
    d = radiograph.decimation
    if d == 1:
        return bbox_px, centroid_px
    rows, cols = radiograph.source_shape
    r0, c0, r1, c1 = bbox_px
    row, col = radiograph.to_source_px(*centroid_px)
    return (r0 * d, c0 * d, min(r1 * d, rows), min(c1 * d, cols)), (round(row, 2), round(col, 2))


def _enclosing(box: tuple[int, int, int, int], points: np.ndarray,
               shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """``box`` (max exclusive) grown to hold every (row, col) pixel of ``points`` inside an image of ``shape``."""
    if not len(points):
        return box
    low, high = np.floor(points.min(0)), np.ceil(points.max(0)) + 1
    return (max(0, min(box[0], int(low[0]))), max(0, min(box[1], int(low[1]))),
            min(shape[0], max(box[2], int(high[0]))), min(shape[1], max(box[3], int(high[1]))))


def _points_on_source_grid(radiograph: Radiograph, points: np.ndarray | Sequence[tuple[float, float]]
                           ) -> tuple[tuple[float, float], ...]:
    """(row, col) points on ``radiograph.image`` in the file's pixel coordinates, to 0.01 pixel, kept inside
    the image (a head's field may reach past its edge)."""
    rows, cols = radiograph.source_shape
    return tuple((round(min(max(row, 0.0), rows - 1.0), 2), round(min(max(col, 0.0), cols - 1.0), 2))
                 for row, col in (radiograph.to_source_px(float(r), float(c)) for r, c in points))
