"""Simulate a data set: per-image seeds, independent nuisance draws, DICOM + ground truth.

Randomness is split into independent streams per image (``SeedSequence(seed).spawn``):
labels, nuisance (acquisition, DICOM encoding, body habitus and pose), anatomy, lesions
and noise.  Nuisance parameters are therefore independent of the labels by construction
(a test checks it), and the same seed gives the same files whatever the worker count.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import logging
import multiprocessing as mp
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from calcdx.allocator import retain_freed_memory
from calcdx.datasets.manifest import ManifestRow, write_manifest
from calcdx.datasets.npz_file import save_npz
from calcdx.datasets.simulator.anatomy import REGION_SIZE_MM, Body, Phantom, build_phantom
from calcdx.datasets.simulator.dicom_writer import default_study_date, write_radiograph
from calcdx.datasets.simulator.embedding import embed_in_body
from calcdx.datasets.simulator.follow_up import Course, FollowUp, follow_up_streams, sample_follow_up
from calcdx.datasets.simulator.lesion import Lesion, support
from calcdx.datasets.simulator.look_alikes import NEGATIVE_RENDERERS
from calcdx.datasets.simulator.materials import Material
from calcdx.datasets.simulator.patterns import HADD_LENGTH_MM, PATTERN_RENDERERS, hadd
from calcdx.datasets.simulator.physics import Acquisition, collimated_rows, expose, process
from calcdx.datasets.simulator.shapes import Grid, Window, enclosing_window
from calcdx.errors import ConfigError
from calcdx.pieces import axes_mm
from calcdx.taxonomy import LOOK_ALIKE_GROUPS, PATTERNS, Pattern, Region

logger = logging.getLogger(__name__)

REGION_PATTERN_WEIGHTS: dict[Region, dict[Pattern, float]] = {
    Region.SHOULDER: {Pattern.HADD: 4, Pattern.CPPD: 1, Pattern.TUMORAL_CALCINOSIS: 1.5, Pattern.PHLEBOLITH: 0.5,
                      Pattern.MYOSITIS_OSSIFICANS: 1, Pattern.CALCINOSIS_UNIVERSALIS: 1},
    Region.KNEE: {Pattern.HADD: 0.7, Pattern.CPPD: 4, Pattern.TUMORAL_CALCINOSIS: 1, Pattern.PHLEBOLITH: 0.7,
                  Pattern.MYOSITIS_OSSIFICANS: 1, Pattern.CALCINOSIS_UNIVERSALIS: 1},
    Region.HIP_PELVIS: {Pattern.HADD: 1.5, Pattern.CPPD: 1, Pattern.TUMORAL_CALCINOSIS: 1.5, Pattern.PHLEBOLITH: 3,
                        Pattern.MYOSITIS_OSSIFICANS: 1, Pattern.CALCINOSIS_UNIVERSALIS: 1},
    Region.HAND_WRIST: {Pattern.HADD: 1.5, Pattern.CPPD: 3, Pattern.TUMORAL_CALCINOSIS: 1, Pattern.PHLEBOLITH: 1,
                        Pattern.MYOSITIS_OSSIFICANS: 0.3, Pattern.CALCINOSIS_UNIVERSALIS: 1.5},
    Region.THIGH_LEG: {Pattern.HADD: 0.4, Pattern.CPPD: 0.3, Pattern.TUMORAL_CALCINOSIS: 0.7, Pattern.PHLEBOLITH: 1.5,
                       Pattern.MYOSITIS_OSSIFICANS: 4, Pattern.CALCINOSIS_UNIVERSALIS: 2},
}
REGION_DOSE_FACTOR: dict[Region, float] = {Region.SHOULDER: 1.0, Region.KNEE: 1.0, Region.HIP_PELVIS: 1.0,
                                           Region.HAND_WRIST: 1.5, Region.THIGH_LEG: 1.0}
"""Detector dose behind the patient relative to the common 5 uGy: extremities are exposed for
fine detail (table-top, no grid) at a higher detector dose."""
VISIBILITIES = ("subtle", "moderate", "obvious")
VISIBILITY_P = (0.2, 0.6, 0.2)


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate.  ``spacing_mm=None`` draws a native detector spacing (0.1-0.2 mm)."""

    regions: tuple[Region, ...] = tuple(Region)
    patterns: tuple[Pattern, ...] = PATTERNS
    spacing_mm: float | None = None
    positive_fraction: float = 0.55
    hard_negative_rate: float = 0.6
    """Share of images that draw look-alikes: each such image draws 0-3 (0.9 on average), besides the
    lead marker that half of all images get."""
    look_alikes: tuple[str, ...] = LOOK_ALIKE_GROUPS
    """The look-alike kinds drawn, uniformly (the lead marker is drawn apart)."""
    twins: bool = False
    follow_ups: bool = False
    """Also render a follow-up study of each case with HADD (``follow_up``)."""
    shifted: bool = False  # acquisition outside the training range (kVp, dose, blur, spacing)
    hadd_length_mm: tuple[float, float] = HADD_LENGTH_MM
    """Range of HADD deposits' long axes (mm); the default is the standard data set's."""

    def __post_init__(self) -> None:
        if len(self.hadd_length_mm) != 2 or not 0.5 <= self.hadd_length_mm[0] <= self.hadd_length_mm[1] <= 60.0:
            raise ConfigError('Argument "hadd_length_mm" should be a range (low, high) within [0.5, 60] mm, '
                              f'got {self.hadd_length_mm}')
        if self.spacing_mm is not None and not 0.05 <= self.spacing_mm <= 2.0:
            raise ConfigError(f'Argument "spacing_mm" should be in [0.05, 2.0] mm, got {self.spacing_mm}')
        if not self.regions or not self.patterns:
            raise ConfigError('Arguments "regions" and "patterns" must not be empty')
        if not 0.0 <= self.hard_negative_rate <= 1.0:
            raise ConfigError(f'Argument "hard_negative_rate" should be in [0, 1], got {self.hard_negative_rate}')
        unknown = sorted(set(self.look_alikes) - set(LOOK_ALIKE_GROUPS))
        if unknown or not self.look_alikes:
            raise ConfigError(f'Argument "look_alikes" should name some of {", ".join(LOOK_ALIKE_GROUPS)}; '
                              f'got {", ".join(self.look_alikes) or "none"}')


@dataclass
class Case:
    image: np.ndarray
    spacing_mm: float
    lesions: list[Lesion]
    masks: list[np.ndarray]
    region: Region
    body: Body
    acquisition: Acquisition
    dicom: dict[str, Any]
    labels: frozenset[Pattern]
    extras: dict[str, Any] = field(default_factory=dict)
    mask_windows: list[Window] = field(default_factory=list)
    """Each mask's bounding box (the mask is False outside it)."""


def _streams(seed: int, index: int) -> list[np.random.Generator]:
    child = np.random.SeedSequence([seed, index])
    return [np.random.default_rng(s) for s in child.spawn(5)]


def sample_nuisance(rng: np.random.Generator, region: Region, cfg: SimulationConfig
                    ) -> tuple[Acquisition, Body, dict[str, Any], float, float]:
    """Acquisition, body, DICOM encoding, spacing and field scale — never looks at labels."""
    detector = str(rng.choice(["DR", "CR"]))
    kvp = rng.uniform(92, 110) if cfg.shifted else rng.uniform(55, 85)
    dose = REGION_DOSE_FACTOR[region] * float(np.exp(rng.normal(np.log(5.0), 0.35)))
    if cfg.shifted:
        dose *= 0.35
    blur = rng.uniform(0.06, 0.14) if detector == "DR" else rng.uniform(0.12, 0.25)
    if cfg.shifted:
        blur *= 2.0
    grid = bool(rng.random() < 0.6)
    acq = Acquisition(
        kvp=float(kvp), dose_ugy=float(dose), detector=detector, scatter_to_primary=float(rng.uniform(0.2, 1.5)),
        grid=grid, blur_mm=float(blur), electronic_noise=float(rng.uniform(0.0005, 0.003)),
        heel_strength=float(rng.uniform(0.08, 0.24)), heel_axis=str(rng.choice(["rows", "cols"])),
        processing=str(rng.choice(["log", "unsharp", "equalised", "raw"], p=[0.3, 0.35, 0.25, 0.1])),
        gamma=float(rng.uniform(0.8, 1.25)), collimation_mm=float(rng.choice([0.0, rng.uniform(3, 15)])),
        grid_line_amplitude=float(rng.uniform(0.0, 0.012)) if grid else 0.0,
    )
    views = ["AP", "LAT"] if region is not Region.HAND_WRIST else ["PA", "OBL"]
    body = Body(habitus=float(np.clip(np.exp(rng.normal(0.05, 0.15)), 0.8, 1.5)),
                fat_fraction=float(rng.uniform(0.12, 0.38)), bone_density=float(rng.uniform(0.55, 1.1)),
                view=str(rng.choice(views)), laterality=str(rng.choice(["L", "R"])),
                rotation_deg=float(rng.uniform(-8, 8)))
    spacing = cfg.spacing_mm if cfg.spacing_mm is not None else float(rng.uniform(0.1, 0.2))
    if cfg.shifted and cfg.spacing_mm is not None:
        spacing = cfg.spacing_mm * float(rng.choice([0.8, 1.25]))
    dicom = {
        "modality": "CR" if detector == "CR" else "DX",
        "photometric": str(rng.choice(["MONOCHROME1", "MONOCHROME2"])),
        "bits_stored": int(rng.choice([10, 12, 14, 15, 16])),
        # one uniform draw either way: the JPEG-LS files are half of what used to be JPEG 2000
        "compression": str(rng.choice(["none", "rle", "j2k", "jpegls"], p=[0.7, 0.2, 0.05, 0.05])),
        "age_years": int(rng.integers(18, 90)),
        "sex": str(rng.choice(["F", "M"])),
    }
    return acq, body, dicom, float(spacing), float(rng.uniform(0.9, 1.1))


def sample_labels(rng: np.random.Generator, region: Region, cfg: SimulationConfig) -> list[Pattern]:
    """Patterns present in this image (0, 1 or 2), weighted by regional plausibility."""
    if rng.random() >= cfg.positive_fraction:
        return []
    n = 1 if rng.random() < 0.76 else 2
    weights = np.array([REGION_PATTERN_WEIGHTS[region].get(p, 0.0) if p in cfg.patterns else 0.0 for p in PATTERNS])
    if weights.sum() <= 0:
        return []
    chosen = rng.choice(len(PATTERNS), size=min(n, int((weights > 0).sum())), replace=False, p=weights / weights.sum())
    return [PATTERNS[int(i)] for i in sorted(chosen)]


def _transform(arr: np.ndarray, body: Body, order: int) -> np.ndarray:
    """Mirror for laterality and rotate about the centre (OpenCV): bilinear for float images when
    ``order`` is 1, nearest-neighbour for masks (bool or uint8).  Bool masks get nothing from outside
    the frame; images and uint8 masks continue their edge.  Mirror and rotation are one warp.

    A float image is an attenuation image (``physics.expose`` poses the beam's ``-ln T``): rotated as 16-bit
    levels over ``ATTENUATION_RANGE`` (``_warp_16bit``), a quarter of the time of a float32 warp."""
    import cv2

    h, w = arr.shape
    mirrored = body.laterality == "L"
    if abs(body.rotation_deg) <= 0.5:
        return np.ascontiguousarray(arr[:, ::-1] if mirrored else arr)
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), body.rotation_deg, 1.0)
    if mirrored:  # rotate(mirror(x)): mirror takes column x to w - 1 - x
        matrix = matrix @ np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    is_bool = arr.dtype == bool
    src = arr.view(np.uint8) if is_bool else arr
    if order == 1 and src.dtype == np.float32:
        return _warp_16bit(src, matrix, ATTENUATION_RANGE)
    nearest = order == 0 or src.dtype == np.uint8
    out = cv2.warpAffine(np.ascontiguousarray(src), matrix, (w, h),
                         flags=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT if is_bool else cv2.BORDER_REPLICATE, borderValue=0)
    return out.astype(bool) if is_bool else out


def _warp_16bit(image: np.ndarray, matrix: np.ndarray, max_range: float) -> np.ndarray:
    """``image`` (float32) warped bilinearly by ``matrix``, edges continued, as 65,536 levels from its least
    value up to ``max_range`` above it (higher values come out at that).  OpenCV's bilinear warp of float32
    has no vector code: 16.9 ms for 3 Mpx on one thread, against 4.4 ms for 16-bit values."""
    import cv2

    h, w = image.shape
    low, high = cv2.minMaxLoc(image)[:2]
    step = max(min(high, low + max_range) - low, 1e-12) / 65535.0
    levels = cv2.addWeighted(image, 1.0 / step, image, 0.0, -low / step, dtype=cv2.CV_16U)  # rounded, saturated
    warped = cv2.warpAffine(levels, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.addWeighted(warped, step, warped, 0.0, low, dtype=cv2.CV_32F)


ATTENUATION_RANGE = 16.0
"""How far above the least attenuation (``-ln T``) of a radiograph its pose keeps levels: a transmission
1e-7 of the brightest pixel's, where no quantum arrives (metal beyond it comes out at this).  A level is
then 2.4e-4 of attenuation; rounding to levels and the 16-bit warp's integer weights keep the result within
one level of the float warp (a test): the transmission off by at most 0.024 %, against 1.4-3 % of quantum
noise (1,000-5,000 quanta per pixel)."""


FIELD_FRACTION_MIN = 0.5
"""A lesion is annotated (and its pattern labelled) only if at least this share of its area lies in
the open field: inside the frame after the pose, outside the collimator's shutters.  A deposit
mostly cut off or under a shutter is not something a reader could call; labelling it taught the
model that invisible phleboliths exist (2 of the 40 test phleboliths, both scored below 0.003)."""


def field_mask(mask: np.ndarray, body: Body, shutter_rows: int) -> np.ndarray | None:
    """``mask`` posed like the image and cut to the open field; None when less than
    ``FIELD_FRACTION_MIN`` of its area is left there."""
    window = support(mask)
    posed = field_window(mask[window], window, mask.shape, body, shutter_rows)
    if posed is None:
        return None
    full = np.zeros(mask.shape, dtype=bool)
    full[posed[1]] = posed[0]
    return full


def field_window(local: np.ndarray, window: Window, shape: tuple[int, int], body: Body, shutter_rows: int
                 ) -> tuple[np.ndarray, Window] | None:
    """``field_mask`` for a mask known inside ``window`` of a ``shape`` frame: the posed mask
    inside its own window, or None.  Only the mask's bounding box is warped, with the
    rotation of the whole frame (the same nearest-neighbour sampling)."""
    import cv2

    area = int(local.sum())
    if area == 0:
        return None
    h, w = shape
    r0, c0 = window[0].start, window[1].start
    if body.laterality == "L":
        local = local[:, ::-1]
        c0 = w - window[1].stop
    if abs(body.rotation_deg) > 0.5:
        matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), body.rotation_deg, 1.0)
        lh, lw = local.shape
        corners = np.array([[c0, r0, 1], [c0 + lw - 1, r0, 1], [c0, r0 + lh - 1, 1], [c0 + lw - 1, r0 + lh - 1, 1]],
                           dtype=np.float64) @ matrix.T
        x0 = max(int(np.floor(corners[:, 0].min())) - 1, 0)
        y0 = max(int(np.floor(corners[:, 1].min())) - 1, 0)
        x1 = min(int(np.ceil(corners[:, 0].max())) + 2, w)
        y1 = min(int(np.ceil(corners[:, 1].max())) + 2, h)
        if x1 <= x0 or y1 <= y0:
            return None
        local_matrix = matrix.copy()  # local output pixel <- local input pixel
        local_matrix[:, 2] += matrix[:, :2] @ np.array([c0, r0], dtype=np.float64) - np.array([x0, y0])
        local = cv2.warpAffine(np.ascontiguousarray(local, dtype=np.uint8), local_matrix, (x1 - x0, y1 - y0),
                               flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
        r0, c0 = y0, x0
    else:
        local = np.array(local, dtype=bool)
    if shutter_rows > 0:
        rows = np.arange(r0, r0 + local.shape[0])
        local[(rows < shutter_rows) | (rows >= h - shutter_rows)] = False
    if local.sum() < FIELD_FRACTION_MIN * area:
        return None
    return local, (slice(r0, r0 + local.shape[0]), slice(c0, c0 + local.shape[1]))


def render_case(seed: int, index: int, cfg: SimulationConfig, *, drop_patterns: bool = False,
                follow_up: FollowUp | None = None) -> Case:
    """Render image ``index`` of the data set with ``seed`` (no file written).

    ``follow_up``: render instead the same patient's follow-up study (``follow_up`` module): the
    prior's anatomy, side, projection, spacing and lesions, a new pose and acquisition, and the HADD
    deposit changed by ``follow_up.change``.
    """
    r_labels, r_nuisance, r_anatomy, r_lesions, r_noise = _streams(seed, index)
    region = cfg.regions[int(r_labels.integers(len(cfg.regions)))]
    patterns = sample_labels(r_labels, region, cfg)
    n_neg = int(r_labels.choice([0, 1, 2, 3], p=[0.4, 0.35, 0.2, 0.05])) if r_labels.random() < cfg.hard_negative_rate \
        else 0
    negatives = [str(r_labels.choice(list(cfg.look_alikes))) for _ in range(n_neg)]
    if r_labels.random() < 0.5:
        negatives.append("lead_marker")
    visibilities = [str(r_labels.choice(VISIBILITIES, p=VISIBILITY_P)) for _ in range(len(patterns) + len(negatives))]
    acq, body, dicom, spacing, scale = sample_nuisance(r_nuisance, region, cfg)
    if follow_up is not None:  # positioned, exposed and encoded afresh; the same patient and detector
        r_nuisance, r_noise, _ = follow_up_streams(seed, index)
        acq, posed, encoding, _, _ = sample_nuisance(r_nuisance, region, cfg)
        body = dataclasses.replace(body, rotation_deg=posed.rotation_deg)
        dicom = {**encoding, "sex": dicom["sex"], "age_years": dicom["age_years"] + follow_up.interval_days // 365}
    h, w = REGION_SIZE_MM[region]
    grid = Grid.make(h * scale, w * scale, spacing)
    phantom: Phantom = build_phantom(region, grid, r_anatomy, body)
    lesions: list[Lesion] = []
    for pattern, vis in zip(patterns, visibilities, strict=False):
        replay = copy.deepcopy(r_lesions) if follow_up is not None and pattern is Pattern.HADD else None
        lesion = (hadd(phantom, r_lesions, vis, length_mm=cfg.hadd_length_mm) if pattern is Pattern.HADD
                  else PATTERN_RENDERERS[pattern](phantom, r_lesions, vis))  # the prior's draws: streams stay aligned
        if replay is not None and follow_up is not None:
            if follow_up.change.course is Course.RESOLVED:
                continue
            lesion = hadd(phantom, replay, vis, follow_up.change, length_mm=cfg.hadd_length_mm)
        if not drop_patterns:
            lesions.append(embed_in_body(phantom, lesion))
    for name, vis in zip(negatives, visibilities[len(patterns):], strict=False):
        lesions.append(embed_in_body(phantom, NEGATIVE_RENDERERS[name](phantom, r_lesions, vis)))
    maps = phantom.maps  # this case's own phantom: the lesions are added into it
    local_masks = []
    supports: dict[Material, Window] = {}  # where a deposit-only material's map is not zero
    for lesion in lesions:
        if lesion.material not in maps:
            maps[lesion.material] = grid.zeros()
            supports[lesion.material] = lesion.window
        elif lesion.material in supports:
            supports[lesion.material] = enclosing_window(supports[lesion.material], lesion.window)
        maps[lesion.material][lesion.window] += lesion.thickness
        peak = float(lesion.thickness.max()) if lesion.thickness.size else 0.0
        local_masks.append(lesion.thickness > max(0.1 * peak, 0.01))
    exposure = expose(maps, spacing, acq, r_noise, place=lambda image: _transform(image, body, 1), supports=supports)
    image = process(exposure.detected, spacing, acq)
    shutter_rows = collimated_rows(spacing, acq)
    in_field = [field_window(m, les.window, grid.shape, body, shutter_rows) for les, m in zip(lesions, local_masks,
                                                                                               strict=True)]
    kept = [(les, m) for les, m in zip(lesions, in_field, strict=True) if m is not None]
    labels = frozenset(Pattern(les.kind) for les, _ in kept if les.is_pattern)
    masks = []
    for _, (local, window) in kept:
        full = np.zeros(image.shape, dtype=bool)
        full[window] = local
        masks.append(full)
    return Case(image=image, spacing_mm=spacing, lesions=[k[0] for k in kept], masks=masks,
                region=region, body=body, acquisition=acq, dicom=dicom, labels=labels,
                extras={"air_kerma_ugy": exposure.air_kerma_ugy}, mask_windows=[k[1][1] for k in kept])


def _write_case(out_dir: Path, seed: int, index: int, cfg: SimulationConfig, twin: bool,
                follow_up: FollowUp | None = None, prior: ManifestRow | None = None) -> ManifestRow:
    """Render and write one case: the image, its twin (``twin``), or the follow-up of ``prior``."""
    case = render_case(seed, index, cfg, drop_patterns=twin, follow_up=follow_up)
    stem = f"img{index:06d}" + ("_twin" if twin else "") + ("_fu" if follow_up else "")
    patient_id = f"SIM{seed:04d}-{index:06d}"
    prior_key = f"{seed}:{index}:0"
    study_key = f"{seed}:{index}:fu" if follow_up else f"{seed}:{index}:{int(twin)}"
    date = default_study_date(prior_key) + dt.timedelta(days=follow_up.interval_days) if follow_up else None
    d = case.dicom
    ds = write_radiograph(out_dir / f"{stem}.dcm", case.image, spacing_mm=case.spacing_mm, modality=d["modality"],
                          photometric=d["photometric"], bits_stored=d["bits_stored"], compression=d["compression"],
                          patient_id=patient_id, study_key=study_key, region=case.region.value, view=case.body.view,
                          laterality=case.body.laterality, kvp=case.acquisition.kvp,
                          air_kerma_ugy=case.extras["air_kerma_ugy"], age_years=d["age_years"], sex=d["sex"],
                          instance_key=f"{study_key}:0", study_date=date)
    lesions_json = []
    for k, (lesion, mask, window) in enumerate(zip(case.lesions, case.masks, case.mask_windows, strict=True)):
        local = mask[window]
        rows, cols = np.nonzero(local)
        mask_name = f"{stem}_m{k}.npz"
        save_mask(out_dir / mask_name, mask)
        long_mm, short_mm = axes_mm(local, (case.spacing_mm, case.spacing_mm))
        rows += window[0].start
        cols += window[1].start
        lesions_json.append({
            "kind": str(lesion.kind), "is_pattern": lesion.is_pattern,
            "bbox_px": [int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1],
            "centroid_px": [float(rows.mean()), float(cols.mean())], "size_mm": [long_mm, short_mm],
            "location_class": str(lesion.location_class), "site": lesion.site, "variant": lesion.variant,
            "visibility": lesion.visibility, "morphology": [str(m) for m in lesion.morphology],
            "material": str(lesion.material), "mask": mask_name, **lesion.extra,
        })
    ann = out_dir / f"{stem}.json"
    annotation: dict[str, Any] = {"lesions": lesions_json, "region": case.region.value,
                                  "sop_instance_uid": str(ds.SOPInstanceUID)}
    follow_extras: dict[str, str] = {}
    if follow_up is not None and prior is not None:
        annotation["follow_up"] = {"prior_study_uid": prior.study_uid, "course": str(follow_up.change.course),
                                   "size_factor": follow_up.change.size_factor,
                                   "interval_days": follow_up.interval_days}
        follow_extras = {"follow_up_of": prior.study_uid, "follow_up_course": str(follow_up.change.course)}
    ann.write_text(json.dumps(annotation, indent=1))
    extras = {
        "region": case.region.value, "spacing_mm": f"{case.spacing_mm:.4f}", "twin": str(int(twin)),
        "n_hard_negatives": str(sum(not les.is_pattern for les in case.lesions)),
        "visibility": ";".join(les.visibility for les in case.lesions if les.is_pattern),
        **{f"acq_{k}": (f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in case.acquisition.as_dict().items()},
        "habitus": f"{case.body.habitus:.3f}", "fat_fraction": f"{case.body.fat_fraction:.3f}",
        "bone_density": f"{case.body.bone_density:.3f}", "rotation_deg": f"{case.body.rotation_deg:.2f}",
        "laterality": case.body.laterality, **{f"dicom_{k}": str(v) for k, v in d.items()},
        "air_kerma_ugy": f"{case.extras['air_kerma_ugy']:.4g}", **follow_extras,
    }
    return ManifestRow(path=out_dir / f"{stem}.dcm", patient_id=patient_id, labels=case.labels,
                       study_uid=str(ds.StudyInstanceUID), body_part=case.region.value, view=case.body.view,
                       annotations=ann, extras=extras)


def save_mask(path: Path, mask: np.ndarray) -> None:
    """``mask`` as ``path`` (.npz holding ``mask``, read by ``np.load``), deflated by ISA-L for speed
    (``calcdx.datasets.npz_file``: 0.5 against 10 ms for a 7.8 Mpx mask through ``zipfile`` at zlib level 1)."""
    save_npz(path, "mask", np.asarray(mask, dtype=bool))


def _job(args: tuple[Path, int, int, SimulationConfig]) -> list[ManifestRow]:
    out_dir, seed, index, cfg = args
    rows = [_write_case(out_dir, seed, index, cfg, twin=False)]
    if cfg.twins and rows[0].labels:
        rows.append(_write_case(out_dir, seed, index, cfg, twin=True))
    if cfg.follow_ups and Pattern.HADD in rows[0].labels:
        lesions = json.loads(Path(rows[0].annotations).read_text())["lesions"]  # type: ignore[arg-type]
        variant = next(les["variant"] for les in lesions if les["kind"] == Pattern.HADD.value)
        follow_up = sample_follow_up(follow_up_streams(seed, index)[2], variant)
        rows.append(_write_case(out_dir, seed, index, cfg, twin=False, follow_up=follow_up, prior=rows[0]))
    return rows


def iter_rows(out_dir: Path, n: int, seed: int, cfg: SimulationConfig, workers: int) -> Iterator[list[ManifestRow]]:
    jobs = [(out_dir, seed, i, cfg) for i in range(n)]
    if workers <= 1:  # one BLAS thread here too: the same arithmetic as in the workers
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            yield from map(_job, jobs)
        return
    with mp.get_context("spawn").Pool(workers, initializer=_one_thread_per_worker) as pool:
        yield from pool.imap(_job, jobs, chunksize=1)


def _one_thread_per_worker() -> None:
    """The workers already fill the cores: OpenCV's or the BLAS library's own threads in each would only
    contend (the transmission tables' small matrix products spun OpenBLAS threads: 150 radiographs took
    25.3 against 18.2 s with 2 workers on 2 cores).  Each keeps the memory it frees for the next
    radiograph (``calcdx.allocator``)."""
    import cv2
    from threadpoolctl import threadpool_limits

    cv2.setNumThreads(1)
    threadpool_limits(1)
    retain_freed_memory()


def simulate_dataset(out_dir: str | Path, n: int, seed: int = 0, workers: int = 1,
                     regions: Sequence[str | Region] | None = None, patterns: Sequence[str | Pattern] | None = None,
                     spacing_mm: float | None = None, *, twins: bool = False, follow_ups: bool = False,
                     shifted: bool = False,
                     hard_negative_rate: float = 0.6, look_alikes: Sequence[str] | None = None,
                     hadd_length_mm: tuple[float, float] = HADD_LENGTH_MM,
                     progress: bool = False) -> Path:
    """Simulate ``n`` radiographs into ``out_dir``; returns the manifest path.

    Deterministic for a ``seed`` whatever ``workers``.  Writes ``imgNNNNNN.dcm``, its
    annotations ``.json`` and one mask ``.npz`` per lesion, and ``manifest.csv``.

    ``hard_negative_rate`` and ``look_alikes`` change how often, and which, look-alikes are
    drawn (a look-alike-heavy training set), and ``hadd_length_mm`` the range of HADD deposits' long axes
    (a set of large deposits); the defaults give the standard data set.

    Raises:
        ConfigError: unknown region, pattern or look-alike, bad spacing, rate or length range, n < 1.
    """
    if n < 1:
        raise ConfigError(f'Argument "n" should be a positive integer, got {n}')
    try:
        cfg = SimulationConfig(
            regions=tuple(Region(r) for r in regions) if regions else tuple(Region),
            patterns=tuple(Pattern(p) for p in patterns) if patterns else PATTERNS,
            spacing_mm=spacing_mm, twins=twins, follow_ups=follow_ups, shifted=shifted,
            hard_negative_rate=hard_negative_rate, hadd_length_mm=tuple(float(v) for v in hadd_length_mm),
            look_alikes=tuple(look_alikes) if look_alikes else LOOK_ALIKE_GROUPS,
        )
    except ValueError as exc:
        raise ConfigError(f"unknown region or pattern: {exc} (regions: {', '.join(r.value for r in Region)}; "
                          f"patterns: {', '.join(p.value for p in PATTERNS)})") from exc
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[ManifestRow] = []
    iterator = iter_rows(out, n, seed, cfg, workers)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=n, unit="img", desc="simulate")
    for batch in iterator:
        rows.extend(batch)
    extra = sorted({k for r in rows for k in r.extras})
    return write_manifest(out / "manifest.csv", rows, extra_columns=extra)
