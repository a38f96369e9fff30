"""The imaging chain: material path lengths -> detector signal -> processed image.

Polychromatic Beer-Lambert over 5 keV bins -> detector absorption (CsI for DR, BaFBr for
CR) with energy weighting -> heel effect -> scatter (scatter-to-primary ratio, broad
kernel, reduced by a grid) -> Poisson quantum noise at the chosen dose -> detector blur
-> electronic noise -> log transform and a vendor-like processing style -> collimation
and grid lines.  All parameters come from ``Acquisition`` and are logged per image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from calcdx.datasets.simulator.materials import ENERGIES_KEV, Material
from calcdx.datasets.simulator.shapes import WHOLE_FRAME, Window, blur, standard_normal
from calcdx.datasets.simulator.spectrum import detector_efficiency, fluence
from calcdx.datasets.simulator.transmission import attenuation

QUANTA_PER_MM2_PER_UGY = 18_000.0
"""About 400 photons per 150 um pixel per uGy (SIMULATOR-NOTES: 320-500)."""


@dataclass(frozen=True)
class Acquisition:
    """Nuisance parameters of one exposure (drawn independently of the labels)."""

    kvp: float
    dose_ugy: float  # detector dose behind the patient at which the exposure control stops
    detector: str  # "DR" or "CR"
    scatter_to_primary: float
    grid: bool
    blur_mm: float
    electronic_noise: float
    heel_strength: float
    heel_axis: str  # "rows" or "cols"
    processing: str  # "log", "unsharp", "equalised", "raw"
    gamma: float
    collimation_mm: float
    grid_line_amplitude: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def detected_spectrum(acq: Acquisition) -> np.ndarray:
    """Weights per energy bin of the detected energy (fluence x absorption x energy), sum 1."""
    spectrum = fluence(acq.kvp) * detector_efficiency(acq.detector) * ENERGIES_KEV
    return spectrum / spectrum.sum()


@dataclass(frozen=True)
class Exposure:
    """What reached the detector: ``detected`` energy per pixel (float32, 1 = the unattenuated
    beam, noise included) and the unattenuated air kerma (uGy) the exposure control chose."""

    detected: np.ndarray
    air_kerma_ugy: float


AEC_FIELD = 0.5
"""The automatic exposure control measures the central ``AEC_FIELD`` of the rows and columns."""


AEC_SAMPLE_PX = 60_000
"""The exposure control reads about this many pixels of its field, on a regular grid (a detector's
measuring chambers integrate over areas, not every pixel): the median of the central field of a
3-Mpx radiograph over every pixel took 4 ms, 1.6 % of rendering it."""


def aec_reference(signal: np.ndarray, inside: np.ndarray) -> float:
    """The signal the automatic exposure control holds at its target: the median of ``signal``
    behind the patient (``inside``) in the central field, or over the whole patient when the
    central field misses it; 1.0 (the open beam) when there is no patient.  The median is taken
    on a regular grid of about ``AEC_SAMPLE_PX`` pixels of the field (every pixel of a small one)."""
    h, w = signal.shape
    dr, dc = int(h * (1 - AEC_FIELD) / 2), int(w * (1 - AEC_FIELD) / 2)
    central = (slice(dr, h - dr), slice(dc, w - dc))
    for values, where in ((signal[central], inside[central]), (signal, inside)):
        stride = max(1, int(np.sqrt(values.size / AEC_SAMPLE_PX)))
        sampled = where[::stride, ::stride]
        if not sampled.any():
            sampled, stride = where, 1  # a patient too small for the grid: every pixel
        if sampled.any():
            return max(float(np.median(values[::stride, ::stride][sampled])), 1e-6)
    return 1.0


def expose(maps: dict[Material, np.ndarray], spacing_mm: float, acq: Acquisition,
           rng: np.random.Generator, place: Callable[[np.ndarray], np.ndarray] | None = None,
           supports: dict[Material, Window] | None = None) -> Exposure:
    """Detected energy per pixel (float32, 1 = the unattenuated beam), noise included.

    ``acq.dose_ugy`` is the detector dose behind the patient that the automatic exposure
    control ends the exposure at (SIMULATOR-NOTES: 2.5-10 uGy, 1,000-5,000 quanta per 150 um
    pixel): thick parts get a larger exposure, not a noisier image.  ``place`` maps the
    patient's frame to the detector's (mirroring, rotation): it is applied to the primary beam's
    attenuation (``-ln T``, float32) and the patient outline (uint8), before everything that belongs to the
    detector (heel effect, scatter, noise, blur).  ``supports``: the windows outside which a material's map
    is zero, where known (``transmission.attenuation``).
    """
    import cv2

    place = place or (lambda image: image)
    materials = [m for m in maps if m is not Material.AIR]
    supports = supports or {}
    # posed as attenuation (line integrals, linear in the path lengths), then exponentiated
    primary = cv2.exp(cv2.multiply(place(attenuation({m: maps[m] for m in materials}, detected_spectrum(acq),
                                                     supports)), -1.0))
    shape = primary.shape
    # heel effect: fluence falls toward the anode side
    axis = 0 if acq.heel_axis == "rows" else 1
    n = shape[axis]
    ramp = 1.0 - acq.heel_strength * np.linspace(0.0, 1.0, n, dtype=np.float32) ** 1.5
    primary *= ramp[:, None] if axis == 0 else ramp[None, :]
    # scatter: a broad, smooth veil proportional to the local primary behind the patient
    total_mm = np.zeros(shape, dtype=np.float32)
    for m in materials:
        window = supports.get(m, WHOLE_FRAME)
        total_mm[window] += maps[m][window]
    inside = place((total_mm > 1.0).view(np.uint8)) > 0  # a mask warps nearest-neighbour: a third of the time
    signal = primary  # the scatter veil is added in place
    if inside.any():
        spr = acq.scatter_to_primary * (0.25 if acq.grid else 1.0)
        behind = primary * inside
        veil = blur(behind, 25.0 / spacing_mm)
        primary_inside = cv2.mean(primary, mask=inside.view(np.uint8))[0]
        cv2.scaleAdd(veil, spr * primary_inside / max(float(veil.mean()), 1e-6) * 0.5, primary, dst=signal)
    # quantum noise: the exposure control scales the beam so that the reference signal behind the
    # patient receives the detector dose; quanta per pixel follow from the dose and the pixel area
    reference = aec_reference(signal, inside)
    quanta = np.float32(acq.dose_ugy * QUANTA_PER_MM2_PER_UGY * spacing_mm * spacing_mm / reference)
    cv2.max(signal, 1e-6, dst=signal)
    signal *= quanta
    counts = quantum_counts(signal, rng)
    counts *= np.float32(1.0) / quanta
    blurred = blur(counts, acq.blur_mm / spacing_mm) if acq.blur_mm / spacing_mm > 0.3 else counts
    # electronic noise: relative to the signal at the exposure control's target
    noise = standard_normal(rng, shape)
    cv2.scaleAdd(noise, float(acq.electronic_noise * reference), blurred, dst=blurred)
    return Exposure(cv2.max(blurred, 1e-4 * reference, dst=blurred), acq.dose_ugy / reference)


GAUSSIAN_FROM_QUANTA = 50.0


def quantum_counts(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Detected quanta per pixel (float32) for ``expected`` mean quanta: Poisson statistics.

    Pixels expecting fewer than ``GAUSSIAN_FROM_QUANTA`` quanta are drawn from the Poisson law;
    the rest from its normal limit N(lambda, lambda) (skewness below 0.14, never negative
    there), 3x faster than Poisson sampling on 8 Mpx (and the normal draws come from OpenCV,
    ``shapes.standard_normal``, 4x faster again).
    """
    import cv2

    lam = np.ascontiguousarray(expected, dtype=np.float32)
    counts = standard_normal(rng, lam.shape)
    counts *= cv2.sqrt(lam)
    counts += lam
    if lam.size and float(lam.min()) < GAUSSIAN_FROM_QUANTA:  # a bright frame has no such pixel: no mask
        low = lam < GAUSSIAN_FROM_QUANTA
        counts[low] = rng.poisson(lam[low])
    return counts


def process(detected: np.ndarray, spacing_mm: float, acq: Acquisition) -> np.ndarray:
    """Detected signal -> display image in [0, 1], bright = dense (log, then a vendor style).

    Pixel-wise steps run in place on one float32 frame (OpenCV's ``pow`` for the gamma: 5x
    numpy's); a 3-Mpx radiograph makes two frame-sized temporaries, not a dozen.
    """
    import cv2

    img = cv2.log(np.asarray(detected, dtype=np.float32))
    img *= np.float32(-1.0)  # attenuation, -ln(detected)
    if acq.processing == "raw":
        top = float(np.percentile(_percentile_sample(img), 99.9))
        img *= np.float32(1.0 / max(top, 1e-6))
        _clip_unit(img)
    else:
        lo, hi = np.percentile(_percentile_sample(img), [0.5, 99.8])
        img -= np.float32(lo)
        img *= np.float32(1.0 / max(hi - lo, 1e-6))
        _clip_unit(img)
    if acq.processing == "unsharp":  # img + 0.6 (img - base)
        base = blur(img, 4.0 / spacing_mm)
        img *= np.float32(1.6)
        img -= base * np.float32(0.6)
        _clip_unit(img)
    elif acq.processing == "equalised":  # 0.55 img + 0.45 (img - base + 0.5)
        base = blur(img, 25.0 / spacing_mm)
        base *= np.float32(-0.45)
        base += np.float32(0.225)
        img += base
        _clip_unit(img)
    if acq.gamma != 1.0:
        cv2.pow(img, float(acq.gamma), dst=img)
    if acq.grid and acq.grid_line_amplitude > 0:
        cols = np.arange(img.shape[1], dtype=np.float32) * spacing_mm
        img *= (1.0 + acq.grid_line_amplitude * np.sin(2 * np.pi * cols / 0.25 * 0.93))[None, :].astype(np.float32)
    edge = collimated_rows(spacing_mm, acq)
    if edge > 0:
        for shutter in (img[:edge, :], img[-edge:, :]):
            shutter *= np.float32(0.15)
            shutter += np.float32(0.8)
    return _clip_unit(img)


def _clip_unit(img: np.ndarray) -> np.ndarray:
    """``img`` clipped to [0, 1] in place (two OpenCV passes: a third of ``np.clip``'s time)."""
    import cv2

    cv2.max(img, 0.0, dst=img)
    cv2.min(img, 1.0, dst=img)
    return img


PERCENTILE_SAMPLE_PX = 250_000
"""The display window's percentiles are taken on a regular subsample of about this many pixels
(every pixel of smaller images): a full-image selection took 45 ms of a 3-Mpx radiograph."""


def _percentile_sample(image: np.ndarray) -> np.ndarray:
    stride = max(1, int(np.sqrt(image.size / PERCENTILE_SAMPLE_PX)))
    return image[::stride, ::stride]


def collimated_rows(spacing_mm: float, acq: Acquisition) -> int:
    """Rows hidden by each collimator shutter (top and bottom) at ``spacing_mm``."""
    return int(acq.collimation_mm / spacing_mm) if acq.collimation_mm > 0 else 0
