"""Polychromatic tube spectra (50-90 kVp) and detector absorption, tabulated on ENERGIES_KEV.

A Kramers bremsstrahlung spectrum, filtered by the tube's aluminium (2.5-4 mm) and
weighted by a caesium-iodide (DR) or phosphor (CR) absorption efficiency.  Mean energies
of the filtered 60 and 70 kVp spectra are close to the 36 and 39 keV measured with spekpy
(SIMULATOR-NOTES.md); a test checks it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import xraydb

from calcdx.datasets.simulator.materials import ENERGIES_KEV


@lru_cache(maxsize=64)
def fluence(kvp: float, al_mm: float = 2.5) -> np.ndarray:
    """Relative photon fluence per energy bin (sums to 1) for a tube at ``kvp``."""
    e = ENERGIES_KEV
    raw = np.clip(kvp - e, 0.0, None) / e  # Kramers: photons per keV ~ (kVp - E) / E
    filtered = raw * np.exp(-_aluminium_mu_per_mm() * al_mm)
    return filtered / filtered.sum()


@lru_cache(maxsize=1)
def _aluminium_mu_per_mm() -> np.ndarray:
    """The tube filter's attenuation (1/mm) per energy bin: looked up once, as every image draws its own kVp
    (``fluence``'s cache never hits then; the lookup was 1 % of a native radiograph's time)."""
    return xraydb.material_mu("Al", ENERGIES_KEV * 1000.0, density=2.70) / 10.0


@lru_cache(maxsize=8)
def detector_efficiency(detector: str) -> np.ndarray:
    """Fraction of photons absorbed per energy bin: 0.5 mm CsI (DR) or 0.2 mm BaFBr (CR)."""
    e = ENERGIES_KEV * 1000.0
    if detector == "DR":
        mu = xraydb.material_mu("CsI", e, density=4.51) / 10.0
        return 1.0 - np.exp(-mu * 0.5)
    mu = xraydb.material_mu("BaFBr", e, density=5.1) / 10.0
    return 1.0 - np.exp(-mu * 0.2)


def mean_energy_kev(kvp: float, al_mm: float = 2.5) -> float:
    """Fluence-weighted mean photon energy (keV)."""
    return float((fluence(kvp, al_mm) * ENERGIES_KEV).sum())
