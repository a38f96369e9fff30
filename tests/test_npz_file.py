"""The simulator's .npz writer: what np.load and zipfile read back (CRC checked) equals what was written."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from calcdx.datasets import npz_file
from calcdx.datasets.npz_file import save_npz


@pytest.mark.parametrize("array", [
    np.zeros((2900, 2700), bool),
    np.random.default_rng(0).random((301, 257)) < 0.3,
    np.random.default_rng(1).normal(size=(64, 48)).astype(np.float32),
    np.arange(24, dtype=np.uint16).reshape(2, 3, 4)[:, ::-1],  # not contiguous
])
def test_round_trip_through_np_load_and_zipfile(tmp_path: Path, array: np.ndarray) -> None:
    path = tmp_path / "m.npz"
    save_npz(path, "mask", array)
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["mask.npy"]
        assert archive.testzip() is None  # every member's CRC-32 matches
        assert archive.getinfo("mask.npy").compress_type == zipfile.ZIP_DEFLATED
    with np.load(path) as data:
        assert list(data) == ["mask"]
        np.testing.assert_array_equal(data["mask"], array)
        assert data["mask"].dtype == array.dtype


def test_same_array_same_bytes(tmp_path: Path) -> None:
    """No time stamp or other state enters the file: the same seed writes the same data set."""
    mask = np.random.default_rng(2).random((500, 400)) < 0.01
    save_npz(tmp_path / "a.npz", "mask", mask)
    save_npz(tmp_path / "b.npz", "mask", mask)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_no_zip64_member_refused_with_its_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(npz_file, "MAX_ZIP32_BYTES", 1000)
    with pytest.raises(ValueError, match=r"big\.npz"):
        save_npz(tmp_path / "big.npz", "mask", np.zeros(2000, bool))
    assert not (tmp_path / "big.npz").exists()
