"""JPEG 2000 decoded at a reduced resolution level (``calcdx.datasets.j2k_levels``), on real files."""

from __future__ import annotations

import copy
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames
from pydicom.uid import JPEG2000Lossless

from calcdx.datasets.j2k_levels import levels_for_spacing, pillow_decode, read_header, reduced_shape
from calcdx.datasets.reader import read_radiograph
from calcdx.errors import CalcdxError
from tests.reader_fixtures import sample_file, small_radiograph

REPO = Path(__file__).resolve().parents[1]


def test_levels_follow_the_spacing_the_caller_can_use() -> None:
    assert levels_for_spacing((0.1, 0.1), 0.4) == 2
    assert levels_for_spacing((0.15, 0.15), 0.4) == 1
    assert levels_for_spacing((0.2, 0.2), 0.4) == 1
    assert levels_for_spacing((0.2, 0.25), 0.4) == 0  # the finer axis must not pass the limit either
    assert levels_for_spacing((0.05, 0.05), 10.0) == 5
    assert reduced_shape(1765, 1070, 2) == (442, 268)


@pytest.mark.parametrize("name", ["img000003.dcm", "img000004.dcm", "img000000.dcm"])  # 12, 10 and 16 bits
def test_pillow_values_are_the_stored_values(name: str) -> None:
    ds = pydicom.dcmread(REPO / "examples" / name)
    codestream = next(generate_frames(ds.PixelData, number_of_frames=1))
    assert read_header(codestream).precision == ds.BitsStored
    np.testing.assert_array_equal(pillow_decode(codestream, 0), ds.pixel_array)


def test_a_real_radiograph_read_at_a_coarser_level_matches_its_area_average() -> None:
    path = sample_file("RG3_J2KR.dcm")  # real CR of the lower leg, JPEG 2000 lossless, no spacing
    full = read_radiograph(path, default_spacing_mm=0.1)
    coarse = read_radiograph(path, default_spacing_mm=0.1, coarsest_spacing_mm=0.4)
    level = coarse.levels_discarded
    assert level in (1, 2)
    assert coarse.shape == reduced_shape(*full.shape, level)
    assert coarse.source_shape == full.shape
    assert coarse.pixel_spacing_mm == (0.1 * 2 ** level, 0.1 * 2 ** level)
    assert coarse.source_pixel_spacing_mm == pytest.approx((0.1, 0.1))
    assert f"at 1/{2 ** level} resolution" in coarse.applied[0]
    rows, cols = full.shape[0] // 2 ** level, full.shape[1] // 2 ** level
    area = cv2.resize(full.image[: rows * 2 ** level, : cols * 2 ** level], (cols, rows), interpolation=cv2.INTER_AREA)
    assert float(np.abs(coarse.image[:rows, :cols] - area).mean()) < 0.005


def test_full_resolution_where_no_level_helps_or_the_file_is_not_jpeg_2000(tmp_path: Path) -> None:
    unc = sample_file("RG3_UNCR.dcm")
    assert read_radiograph(unc, default_spacing_mm=0.1, coarsest_spacing_mm=0.4).levels_discarded == 0
    j2k = sample_file("RG3_J2KR.dcm")
    fine = read_radiograph(j2k, default_spacing_mm=0.3, coarsest_spacing_mm=0.4)  # 0.6 mm would pass 0.4
    np.testing.assert_array_equal(fine.image, read_radiograph(j2k, default_spacing_mm=0.3).image)
    assert fine.levels_discarded == 0


def test_a_corrupt_stream_is_still_reported_by_the_full_decoder(tmp_path: Path) -> None:
    ds = small_radiograph(256)
    ds.ImagerPixelSpacing = [0.1, 0.1]
    ds.compress(JPEG2000Lossless)
    broken = copy.deepcopy(ds)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    cut = frame[: len(frame) // 3]  # header intact, tile data cut
    broken.PixelData = pydicom.encaps.encapsulate([cut])
    path = tmp_path / "cut.dcm"
    broken.save_as(path)
    with pytest.raises(CalcdxError) as caught:
        read_radiograph(path, coarsest_spacing_mm=0.4)
    assert str(path) in str(caught.value)
