"""Materials and their energy-dependent linear attenuation (1/mm), from ``xraydb``.

Soft-tissue compositions are ICRU-44 mass fractions; mineral deposits are stoichiometric:
hydroxyapatite (HADD, tumoral calcinosis, phleboliths), calcium pyrophosphate dihydrate
(CPPD), monosodium urate (gout tophi).  Deposits are partial-volume mixtures with soft
tissue, expressed as a fraction of the pure mineral's path length.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cache

import numpy as np
import xraydb

ENERGIES_KEV: np.ndarray = np.arange(17.5, 92.5, 5.0)
"""Centres of the 5 keV energy bins the polychromatic model integrates over."""


class Material(StrEnum):
    FAT = "fat"
    MUSCLE = "muscle"
    SPONGIOSA = "spongiosa"  # trabecular bone with marrow
    CORTICAL_BONE = "cortical_bone"
    HYDROXYAPATITE = "hydroxyapatite"
    CPPD = "cppd"
    URATE = "urate"
    IRON = "iron"
    LEAD = "lead"
    AIR = "air"


_ATOMIC_MASS = {"H": 1.008, "C": 12.011, "N": 14.007, "O": 15.999, "Na": 22.99, "Mg": 24.305, "P": 30.974,
                "S": 32.06, "Cl": 35.45, "K": 39.098, "Ca": 40.078, "Fe": 55.845}

# ICRU-44 mass fractions (percent) and densities (g/cm3)
_MIXTURES: dict[Material, tuple[dict[str, float], float]] = {
    Material.FAT: ({"H": 11.4, "C": 59.8, "N": 0.7, "O": 27.8, "Na": 0.1, "S": 0.1, "Cl": 0.1}, 0.95),
    Material.MUSCLE: ({"H": 10.2, "C": 14.3, "N": 3.4, "O": 71.0, "Na": 0.1, "P": 0.2, "S": 0.3, "Cl": 0.1,
                       "K": 0.4}, 1.05),
    Material.SPONGIOSA: ({"H": 8.5, "C": 40.4, "N": 2.8, "O": 36.7, "Na": 0.1, "Mg": 0.1, "P": 3.4, "S": 0.2,
                          "Cl": 0.2, "K": 0.1, "Ca": 7.4, "Fe": 0.1}, 1.18),
    Material.CORTICAL_BONE: ({"H": 3.4, "C": 15.5, "N": 4.2, "O": 43.5, "Na": 0.1, "Mg": 0.2, "P": 10.3,
                              "S": 0.3, "Ca": 22.5}, 1.92),
}
_FORMULAS: dict[Material, tuple[str, float]] = {
    Material.HYDROXYAPATITE: ("Ca5P3O13H", 3.16),
    Material.CPPD: ("Ca2P2O9H4", 2.56),
    Material.URATE: ("C5H3N4NaO3", 1.87),
    Material.IRON: ("Fe", 7.87),
    Material.LEAD: ("Pb", 11.35),
    Material.AIR: ("N78O21Ar", 0.0012),
}


def _formula_from_mass_fractions(fractions: dict[str, float]) -> str:
    moles = {el: w / _ATOMIC_MASS[el] for el, w in fractions.items()}
    scale = 1000.0 / min(moles.values())
    return "".join(f"{el}{moles[el] * scale:.0f}" for el in moles)


@cache
def mu_per_mm(material: Material) -> np.ndarray:
    """Linear attenuation coefficient (1/mm) at ``ENERGIES_KEV`` for ``material``."""
    if material in _MIXTURES:
        fractions, density = _MIXTURES[material]
        formula = _formula_from_mass_fractions(fractions)
    else:
        formula, density = _FORMULAS[material]
    mu_per_cm = xraydb.material_mu(formula, ENERGIES_KEV * 1000.0, density=density)
    return np.asarray(mu_per_cm, dtype=np.float64) / 10.0


def attenuation_table(materials: list[Material]) -> np.ndarray:
    """(n_energies, n_materials) table of 1/mm coefficients."""
    return np.stack([mu_per_mm(m) for m in materials], axis=1)
