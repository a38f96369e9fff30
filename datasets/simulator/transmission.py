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

from functools import cache

import numpy as np

from calcdx.datasets.simulator.materials import Material, attenuation_table, mu_per_mm

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


def primary_transmission(maps: dict[Material, np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Primary transmission per pixel (float32) for path-length ``maps`` (mm) and detected
    spectrum ``weights`` per energy bin (summing to 1)."""
    import cv2

    shape = next(iter(maps.values())).shape
    basis_mm = np.zeros((2, *shape), dtype=np.float32)
    scratch = np.empty(shape, dtype=np.float32)
    for material, thickness in maps.items():
        if material in PER_ENERGY:
            continue
        c0, c1 = basis_coefficients(material)
        basis_mm[0] += np.multiply(thickness, np.float32(c0), out=scratch)
        basis_mm[1] += np.multiply(thickness, np.float32(c1), out=scratch)
    weights = np.asarray(weights, dtype=np.float64)
    mu_basis = attenuation_table(list(BASIS))  # (E, 2)
    mu_effective = weights @ mu_basis  # slope of -ln T at zero thickness
    lo = basis_mm.reshape(2, -1).min(axis=1).astype(np.float64)
    hi = basis_mm.reshape(2, -1).max(axis=1).astype(np.float64)
    step = np.maximum(hi - lo, 1e-3) / (TABLE_SIZE - 1)
    a0 = lo[0] + step[0] * np.arange(TABLE_SIZE)
    a1 = lo[1] + step[1] * np.arange(TABLE_SIZE)
    transmitted = weights * np.exp(-(a0[:, None, None] * mu_basis[:, 0] + a1[None, :, None] * mu_basis[:, 1]))
    total = transmitted.sum(axis=-1)  # (n0, n1)
    beam_hardening = -np.log(total) - (a0[:, None] * mu_effective[0] + a1[None, :] * mu_effective[1])
    map1, map2 = cv2.convertMaps((basis_mm[1] - np.float32(lo[1])) / np.float32(step[1]),
                                 (basis_mm[0] - np.float32(lo[0])) / np.float32(step[0]), cv2.CV_16SC2)

    def lookup(table: np.ndarray) -> np.ndarray:
        return cv2.remap(table.astype(np.float32), map1, map2, interpolation=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)

    line = lookup(beam_hardening)
    line += basis_mm[0] * np.float32(mu_effective[0])
    line += basis_mm[1] * np.float32(mu_effective[1])
    for material, thickness in maps.items():
        if material in PER_ENERGY or basis_fit_error(material) <= RESIDUAL_TOLERANCE:
            continue
        residual = mu_per_mm(material) - mu_basis @ basis_coefficients(material)  # (E,)
        line += np.multiply(lookup(transmitted @ residual / total), thickness, out=scratch)
    primary = np.exp(-line)
    special = [m for m in maps if m in PER_ENERGY]
    if special:
        where = np.zeros(shape, dtype=bool)
        for m in special:
            where |= maps[m] > 0
        if where.any():
            primary[where] = primary_transmission_exact({m: t[where] for m, t in maps.items()}, weights)
    return primary
