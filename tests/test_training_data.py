"""Splits, augmentation and the manifest Dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calcdx.datasets.augment import apply_augment, build_augment
from calcdx.datasets.manifest import ManifestRow, read_manifest, write_manifest
from calcdx.datasets.splits import patient_folds, strata, train_val_split
from calcdx.datasets.torch_dataset import ManifestDataset, pad_collate
from calcdx.errors import ConfigError
from calcdx.taxonomy import PATTERNS
from tests.models_fixtures import make_tiny_dataset


def _rows(n: int = 120, seed: int = 0) -> list[ManifestRow]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        labels = frozenset(p for p in PATTERNS if rng.random() < 0.15)
        pid = f"P{rng.integers(0, 40)}"
        rows.append(ManifestRow(path=Path(f"/x/{i}.dcm"), patient_id=pid, labels=labels))
    return rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_folds_never_share_a_patient(seed: int) -> None:
    rows = _rows(seed=seed)
    folds = patient_folds(rows, n_splits=4, seed=seed)
    assert set(folds.tolist()) == {0, 1, 2, 3}
    by_patient: dict[str, set[int]] = {}
    for r, f in zip(rows, folds, strict=True):
        by_patient.setdefault(r.patient_id, set()).add(int(f))
    assert all(len(s) == 1 for s in by_patient.values())
    train, val = train_val_split(rows, 0.25, seed=seed)
    assert not {rows[i].patient_id for i in train} & {rows[i].patient_id for i in val}
    assert sorted(train + val) == list(range(len(rows)))


def test_split_is_label_stratified() -> None:
    rows = _rows(400, seed=3)
    _, val = train_val_split(rows, 0.25, seed=0)
    s = np.array(strata(rows))
    for label in set(s.tolist()):
        n = int((s == label).sum())
        if n >= 30:
            in_val = sum(s[i] == label for i in val)
            assert 0.1 < in_val / n < 0.45, (label, in_val, n)
    with pytest.raises(ConfigError):
        train_val_split(rows, 0.9)


@pytest.mark.parametrize("seed", range(6))
def test_augmentation_keeps_masks_aligned(seed: int) -> None:
    rng = np.random.default_rng(seed)
    img = (0.2 + 0.02 * rng.standard_normal((160, 160))).astype(np.float32)
    masks = np.zeros((6, 160, 160), np.uint8)
    masks[1, 60:66, 40:100] = 1
    masks[3, 100:112, 100:112] = 1
    img[masks.any(0) > 0] = 0.95
    out, out_masks = apply_augment(build_augment("strong"), img, masks, seed=seed)
    assert out.shape == img.shape and out_masks is not None and out_masks.shape == masks.shape
    inside = out[out_masks.any(0) > 0]
    outside = out[out_masks.any(0) == 0]
    assert inside.size > 0
    assert np.median(inside) > np.median(outside) + 0.3
    # same seed -> same draw (resume and DDP rely on it)
    again, again_masks = apply_augment(build_augment("strong"), img, masks, seed=seed)
    assert np.array_equal(out, again) and np.array_equal(out_masks, again_masks)


def test_dataset_crops_carry_mask_labels(tmp_path: Path) -> None:
    manifest = make_tiny_dataset(tmp_path / "d", n=8, size=160)
    rows = read_manifest(manifest)
    ds = ManifestDataset(rows, 0.6, size_px=64, cache_dir=tmp_path / "cache", lesion_crop_p=1.0)
    for i in range(len(ds)):
        s = ds[i]
        assert s["image"].shape == (1, 64, 64) and s["masks"].shape == (6, 64, 64)
        for c in range(6):
            if s["label_weight"][c] > 0 and s["labels"][c] > 0:
                assert s["masks"][c].sum() > 0
            if s["masks"][c].sum() == 0:
                assert s["labels"][c] == 0
    assert any((tmp_path / "cache").iterdir())
    whole = ManifestDataset(rows, 0.6)
    batch = pad_collate([whole[0], whole[1]])
    assert batch["image"].shape[-1] % 32 == 0
    assert batch["labels"].tolist()[0] == rows[0].label_vector()


def test_a_manifest_written_into_a_new_folder_reads_back_with_its_paths(tmp_path: Path) -> None:
    """Researchers merge manifests into a folder that does not exist yet (e.g. train + extra images)."""
    rows = read_manifest(make_tiny_dataset(tmp_path / "d", n=4))
    merged = write_manifest(tmp_path / "new" / "deeper" / "manifest.csv", rows, extra_columns=["note"])
    back = read_manifest(merged)
    assert [r.path.resolve() for r in back] == [r.path.resolve() for r in rows]
    assert [r.label_vector() for r in back] == [r.label_vector() for r in rows]


def test_a_cache_that_cannot_be_written_only_costs_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """A full disk while caching used to end a training run; now the images come back uncached."""
    from calcdx.datasets import torch_dataset

    rows = read_manifest(make_tiny_dataset(tmp_path / "d", n=3))
    expected = [torch_dataset.preprocess(row, 0.6, True, None) for row in rows]

    def disk_full(path: object, **arrays: object) -> None:
        Path(str(path)).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch_dataset.np, "savez", disk_full)
    monkeypatch.setattr(torch_dataset, "_cache_failures", [])
    cache = tmp_path / "cache"
    for row, (image, masks) in zip(rows, expected, strict=True):
        got_image, got_masks = torch_dataset.preprocess(row, 0.6, True, cache)
        np.testing.assert_array_equal(got_image, image.astype(np.float16).astype(np.float32))
        np.testing.assert_array_equal(got_masks, masks)
    assert not list(cache.glob("*"))  # no partial file left behind
    warnings = [r for r in caplog.records if "not caching" in r.getMessage() and r.levelname == "WARNING"]
    assert len(warnings) == 1 and "No space left on device" in warnings[0].getMessage()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_packed_masks_give_back_the_masks(seed: int) -> None:
    """Masks are held as the bit-packed box around their lesions; unpacking restores them exactly."""
    from calcdx.datasets.torch_dataset import PackedMasks

    rng = np.random.default_rng(seed)
    masks = np.zeros((6, 97, 131), dtype=np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        c, r, k = int(rng.integers(6)), int(rng.integers(0, 90)), int(rng.integers(0, 120))
        masks[c, r:r + int(rng.integers(1, 20)), k:k + int(rng.integers(1, 30))] = 1
    packed = PackedMasks(masks)
    np.testing.assert_array_equal(packed.unpack(), masks)
    assert packed.bits.nbytes < masks.size // 8
    empty = np.zeros((6, 10, 12), dtype=np.uint8)
    np.testing.assert_array_equal(PackedMasks(empty).unpack(), empty)


def test_the_cache_returns_what_preprocessing_made_and_reads_older_caches(tmp_path: Path) -> None:
    from calcdx.datasets import torch_dataset

    rows = read_manifest(make_tiny_dataset(tmp_path / "d", n=3))
    cache = tmp_path / "cache"
    for row in rows:
        image, masks = torch_dataset.preprocess(row, 0.6, True, None)
        torch_dataset.preprocess(row, 0.6, True, cache)  # writes
        cache_file = cache / f"{torch_dataset._cache_key(row, 0.6, True)}.npz"
        with np.load(cache_file) as data:
            assert "masks" not in data.files  # bit-packed on disk
        for _ in range(2):
            got_image, got_masks = torch_dataset.preprocess(row, 0.6, True, cache)
            np.testing.assert_array_equal(got_image, image.astype(np.float16).astype(np.float32))
            np.testing.assert_array_equal(got_masks, masks)
            # a cache written before masks were packed still reads
            np.savez(cache_file, image=image.astype(np.float16), masks=masks)
