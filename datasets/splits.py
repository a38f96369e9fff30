"""Patient-level, label-stratified splits (scikit-learn ``StratifiedGroupKFold``).

No patient ever appears in two folds: every image of a patient goes with the patient.
Multi-label rows are stratified by their rarest positive pattern ("none" for negatives).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from calcdx.datasets.manifest import ManifestRow
from calcdx.errors import ConfigError
from calcdx.taxonomy import PATTERNS


def strata(rows: Sequence[ManifestRow]) -> list[str]:
    """One stratum label per row: its rarest positive pattern in the set, or "none"."""
    counts = Counter(p for r in rows for p in r.labels)
    out = []
    for r in rows:
        pos = sorted(r.labels, key=lambda p: (counts[p], PATTERNS.index(p)))
        out.append(pos[0].value if pos else "none")
    return out


def patient_folds(rows: Sequence[ManifestRow], n_splits: int = 5, seed: int = 0) -> np.ndarray:
    """Fold index (0..n_splits-1) per row; rows of one patient share a fold.

    Raises:
        ConfigError: ``n_splits`` < 2 or more folds than patients.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    groups = [r.patient_id for r in rows]
    n_patients = len(set(groups))
    if n_splits < 2 or n_splits > n_patients:
        raise ConfigError(f'Argument "n_splits" should be in [2, {n_patients}] (patients), got {n_splits}')
    y = strata(rows)
    # a stratum smaller than n_splits only triggers a warning in sklearn; merge it into "rare"
    counts = Counter(y)
    y = [s if counts[s] >= n_splits else "rare" for s in y]
    folds = np.full(len(rows), -1, dtype=int)
    skf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for k, (_, test_idx) in enumerate(skf.split(np.zeros(len(rows)), y, groups)):
        folds[test_idx] = k
    return folds


def train_val_split(rows: Sequence[ManifestRow], val_fraction: float = 0.2,
                    seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices (train, val) with about ``val_fraction`` of patients in val, stratified.

    Raises:
        ConfigError: ``val_fraction`` outside (0, 0.5].
    """
    if not 0.0 < val_fraction <= 0.5:
        raise ConfigError(f'Argument "val_fraction" should be in (0, 0.5], got {val_fraction!r}')
    n_patients = len({r.patient_id for r in rows})
    n_splits = max(2, min(n_patients, round(1.0 / val_fraction)))
    folds = patient_folds(rows, n_splits=n_splits, seed=seed)
    val = [i for i, f in enumerate(folds) if f == 0]
    train = [i for i, f in enumerate(folds) if f != 0]
    return train, val
