"""Polychromatic primary transmission through material path-length maps, fast and checked.

The exact sum over energy bins, ``T = sum_E w_E exp(-sum_m mu_m(E) t_m)``, costs one
exponential per bin and pixel (15 x 8 million for a 0.1 mm radiograph).  Below the K-edges
that matter, every tissue and mineral here is, to within 0.35 % over 17.5-87.5 keV (fat: 1.1 %),
a linear combination of two basis materials, muscle and cortical bone (the two-basis decomposition of
Alvarez and Macovski, 1976).  So each pixel needs only its two basis path lengths, and ``T`` is
a smooth function of those two numbers: it is tabulated once per image and interpolated.  The
table holds only the beam-hardening part (``-ln T`` minus its linear, effective-energy part).

The small remainder of each material's fit (fat: up to 1.1 % of its attenuation, which over
13 cm of fat is a 1.2 % error in ``T``) is added to first order: its mean over the spectrum
that leaves the basis path, tabulated the same way, times the material's path length.  The
result agrees with the exact sum to within 1e-3 in ``ln T`` from 55 to 110 kVp (a test; 2e-4 to
6e-4 measured on rendered radiographs), far below quantum noise.

Materials that two bases cannot describe (lead has its K-edge at 88 keV, iron fits to 5 %) are
summed exactly, energy by energy, at the few pixels they cover (markers, foreign bodies).
"""

from __future__ import annotations

from functools import cache, reduce

import numpy as np

from calcdx.datasets.simulator.materials import Material, attenuation_table, mu_per_mm
from calcdx.datasets.simulator.shapes import WHOLE_FRAME, Window, enclosing_window

BASIS: tuple[Material, Material] = (Material.MUSCLE, Material.CORTICAL_BONE)
PER_ENERGY: frozenset[Material] = frozenset({Material.IRON, Material.LEAD})
"""Materials summed exactly per energy bin where present (K-edge in range or poor basis fit)."""
TABLE_SIZE = 256
RESIDUAL_TOLERANCE = 1e-3
"""Materials whose two-basis fit errs by more than this get the first-order correction."""


@cache
def basis_coefficients(material: Material) -> np.ndarray:
    """(2,) path lengths of muscle and cortical bone that attenuate like 1 mm of ``material``.

    Least squares on relative error over the energy bins.
    """
    target = mu_per_mm(material)
    basis = attenuation_table(list(BASIS))
    w = 1.0 / target
    coef, *_ = np.linalg.lstsq(basis * w[:, None], target * w, rcond=None)
    return coef


@cache
def basis_fit_error(material: Material) -> float:
    """Largest relative error of the two-basis fit of ``material`` over the energy bins."""
    approx = attenuation_table(list(BASIS)) @ basis_coefficients(material)
    return float(np.abs(approx / mu_per_mm(material) - 1.0).max())


def primary_transmission_exact(maps: dict[Material, np.ndarray], weights: np.ndarray) -> np.ndarray:
    """``sum_E w_E exp(-sum_m mu_m(E) t_m)`` per pixel, energy by energy (the reference)."""
    materials = list(maps)
    mu = attenuation_table(materials)  # (E, M)
    stack = np.stack([np.asarray(maps[m], dtype=np.float64).ravel() for m in materials])
    line = mu @ stack
    np.exp(-line, out=line)
    shape = np.shape(next(iter(maps.values())))
    return (np.asarray(weights, dtype=np.float64) @ line).reshape(shape)


LOOKUP_CHANNELS = 4
"""OpenCV's ``remap`` interpolates four tables at once as fast as one (9.2 against 9.8 ms on
3 Mpx, one thread; three tables take 14.5 ms), so tables go in fours, zero-padded."""


def primary_transmission(maps: dict[Material, np.ndarray], weights: np.ndarray,
                         supports: dict[Material, Window] | None = None) -> np.ndarray:
    """Primary transmission per pixel (float32): ``exp(-attenuation(...))``."""
    import cv2

    return cv2.exp(cv2.multiply(attenuation(maps, weights, supports), -1.0))


def attenuation(maps: dict[Material, np.ndarray], weights: np.ndarray,
                supports: dict[Material, Window] | None = None) -> np.ndarray:
    """Attenuation ``-ln T`` of the primary beam per pixel (float32) for path-length ``maps`` (mm) and
    detected spectrum ``weights`` per energy bin (summing to 1).

    ``supports`` gives, for materials found only in part of the frame (the deposits), the window
    outside which their map is zero: their sums are taken there only.  The beam-hardening table
    and the first-order residual tables are looked up together, up to ``LOOKUP_CHANNELS`` per
    bilinear ``remap``.
    """
    import cv2

    supports = supports or {}
    shape = next(iter(maps.values())).shape
    basis_mm = [np.zeros(shape, dtype=np.float32), np.zeros(shape, dtype=np.float32)]
    for material, thickness in maps.items():
        if material in PER_ENERGY:
            continue
        for total_mm, coefficient in zip(basis_mm, basis_coefficients(material), strict=True):
            if abs(coefficient) < 1e-9:  # a basis material itself: nothing of the other basis
                continue
            if material in supports:
                window = supports[material]
                total_mm[window] += np.asarray(thickness[window], dtype=np.float32) * np.float32(coefficient)
            else:
                cv2.scaleAdd(np.asarray(thickness, dtype=np.float32), float(coefficient), total_mm, dst=total_mm)
    weights = np.asarray(weights, dtype=np.float64)
    mu_basis = attenuation_table(list(BASIS))  # (E, 2)
    mu_effective = weights @ mu_basis  # slope of -ln T at zero thickness
    extremes = [cv2.minMaxLoc(b)[:2] for b in basis_mm]
    lo = np.array([low for low, _ in extremes])
    hi = np.array([high for _, high in extremes])
    step = np.maximum(hi - lo, 1e-3) / (TABLE_SIZE - 1)
    a0 = lo[0] + step[0] * np.arange(TABLE_SIZE)
    a1 = lo[1] + step[1] * np.arange(TABLE_SIZE)
    # exp(-(a0 mu0 + a1 mu1)) = exp(-a0 mu0) exp(-a1 mu1): 2 x 256 x E exponentials instead of 256^2 x E,
    # and each table's sum over the energies is one (n0, E) @ (E, n1) product
    weighted0 = weights * np.exp(-a0[:, None] * mu_basis[:, 0])  # (n0, E)
    along1 = np.exp(-a1[:, None] * mu_basis[:, 1]).T  # (E, n1)
    total = weighted0 @ along1  # (n0, n1)
    beam_hardening = -np.log(total) - (a0[:, None] * mu_effective[0] + a1[None, :] * mu_effective[1])
    # tables to look up, each with the path length it multiplies (None: the beam-hardening part itself)
    lookups: list[tuple[np.ndarray, Material | None]] = [(beam_hardening, None)] + [
        ((weighted0 * (mu_per_mm(m) - mu_basis @ basis_coefficients(m))) @ along1 / total, m)
        for m in maps if m not in PER_ENERGY and basis_fit_error(m) > RESIDUAL_TOLERANCE]
    # table coordinates of every pixel (column = basis 1, row = basis 0), each in one pass
    map_x = cv2.addWeighted(basis_mm[1], 1.0 / step[1], basis_mm[1], 0.0, -lo[1] / step[1])
    map_y = cv2.addWeighted(basis_mm[0], 1.0 / step[0], basis_mm[0], 0.0, -lo[0] / step[0])
    line = cv2.addWeighted(basis_mm[0], float(mu_effective[0]), basis_mm[1], float(mu_effective[1]), 0.0)
    for start in range(0, len(lookups), LOOKUP_CHANNELS):
        chunk = lookups[start:start + LOOKUP_CHANNELS]
        group = np.zeros((*beam_hardening.shape, LOOKUP_CHANNELS), dtype=np.float32)  # four channels: the
        group[..., :len(chunk)] = np.stack([table for table, _ in chunk], axis=-1)  # fastest remap
        looked_up = cv2.remap(group, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        for k, (_, material) in enumerate(chunk):  # each channel taken out contiguous (a strided view costs 2x)
            if material is None:
                cv2.add(line, cv2.extractChannel(looked_up, k), dst=line)
                continue
            window = supports.get(material, WHOLE_FRAME)
            cv2.accumulateProduct(cv2.extractChannel(looked_up[window], k),
                                  np.asarray(maps[material][window], np.float32), line[window])
    special = [m for m in maps if m in PER_ENERGY]
    if special:  # markers and foreign bodies: the window holding them all, not the frame, is searched
        windows = [supports[m] for m in special if m in supports]
        window = reduce(enclosing_window, windows) if len(windows) == len(special) else WHOLE_FRAME
        where = np.zeros(line[window].shape, dtype=bool)
        for m in special:
            where |= maps[m][window] > 0
        if where.any():
            exact = primary_transmission_exact({m: t[window][where] for m, t in maps.items()}, weights)
            line[window][where] = -np.log(np.maximum(exact, np.finfo(np.float64).tiny))
    return line
