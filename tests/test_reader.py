"""The radiograph reader on real DICOM files (pydicom test data and pydicom-data radiographs)."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from calcdx.datasets.radiograph import SpacingSource
from calcdx.datasets.reader import patient_age_years, read_radiograph, read_radiographs
from calcdx.errors import (
    CorruptDicomError,
    ImageTooLargeError,
    InputError,
    NestingTooDeepError,
    NoPixelDataError,
    NotDicomError,
    NotRadiographError,
    TruncatedPixelDataError,
)
from tests.reader_fixtures import LOSSLESS_SYNTAXES, sample_file, small_radiograph, write_variant


@pytest.mark.parametrize("series", ["RG1", "RG3"])
def test_lossless_variants_of_a_real_radiograph_decode_identically(series: str) -> None:
    # UNCR is the uncompressed original of J2KR (reversible); UNCI the decoded twin of J2KI
    for uncompressed, compressed in (("UNCR", "J2KR"), ("UNCI", "J2KI")):
        reference = read_radiograph(sample_file(f"{series}_{uncompressed}.dcm"))
        other = read_radiograph(sample_file(f"{series}_{compressed}.dcm"))
        assert other.shape == reference.shape
        np.testing.assert_array_equal(other.image, reference.image)


def test_lossy_variant_is_close_to_the_original() -> None:
    a = read_radiograph(sample_file("RG3_UNCR.dcm")).image
    b = read_radiograph(sample_file("RG3_J2KI.dcm")).image
    assert a.shape == b.shape
    assert 0 < float(np.abs(a - b).mean()) < 0.02


def test_big_endian_file_decodes_like_its_little_endian_twin() -> None:
    def as_cr(name: str) -> Dataset:
        ds = pydicom.dcmread(sample_file(name))
        ds.Modality, ds.SOPClassUID = "CR", "1.2.840.10008.5.1.4.1.1.1"
        return ds

    big = read_radiograph(as_cr("MR_small_bigendian.dcm"), voi="none")
    little = read_radiograph(as_cr("MR_small.dcm"), voi="none")
    np.testing.assert_array_equal(big.image, little.image)


def test_monochrome1_comes_out_bright_is_dense() -> None:
    path = sample_file("RG3_UNCR.dcm")
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    r = read_radiograph(path, voi="none")
    raw = ds.pixel_array.astype(np.float64)
    # in MONOCHROME1 low stored values are bright: the reader must invert them
    corr = np.corrcoef(raw.ravel()[::97], r.image.ravel()[::97])[0, 1]
    assert corr < -0.99
    assert "MONOCHROME1 inverted (bright = dense)" in r.applied


@pytest.mark.parametrize(("name", "modality"), [("CT_small.dcm", "CT"), ("MR_small.dcm", "MR")])
def test_cross_sectional_images_are_refused_naming_their_modality(name: str, modality: str) -> None:
    with pytest.raises(NotRadiographError) as info:
        read_radiograph(sample_file(name))
    assert f"modality {modality}" in str(info.value)
    assert name in str(info.value)
    assert info.value.code == "E_NOT_RADIOGRAPH"


def test_colour_radiograph_is_refused() -> None:
    ds = pydicom.dcmread(sample_file("SC_rgb.dcm"))
    ds.Modality = "CR"
    with pytest.raises(NotRadiographError, match="colour image"):
        read_radiograph(ds)


def test_structured_report_is_refused() -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
    ds.Modality = "SR"
    with pytest.raises(NotRadiographError, match="Comprehensive SR"):
        read_radiograph(ds)


def test_radiograph_without_pixels_is_refused() -> None:
    ds = small_radiograph()
    del ds.PixelData
    with pytest.raises(NoPixelDataError):
        read_radiograph(ds)


@pytest.mark.parametrize("syntax", LOSSLESS_SYNTAXES, ids=lambda s: s.name)
def test_every_common_lossless_transfer_syntax_round_trips(syntax: str, tmp_path: Path) -> None:
    ds = small_radiograph()
    reference = read_radiograph(ds)
    path = write_variant(ds, syntax, tmp_path / "v.dcm")
    r = read_radiograph(path)
    assert r.transfer_syntax_uid == syntax
    np.testing.assert_array_equal(r.image, reference.image)


def test_jpeg_baseline_lossy_decodes(tmp_path: Path) -> None:
    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    ds = small_radiograph()
    arr = (ds.pixel_array >> 2).astype(np.uint8)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = arr.tobytes()
    ds.WindowCenter, ds.WindowWidth = 128, 256
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format="JPEG", quality=95)
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].is_undefined_length = True
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.save_as(tmp_path / "jpeg.dcm", enforce_file_format=True)
    r = read_radiograph(tmp_path / "jpeg.dcm")
    assert r.shape == arr.shape
    assert np.isfinite(r.image).all()


def test_modality_lut_sequence_is_applied() -> None:
    ds = pydicom.dcmread(sample_file("mlut_18.dcm"))
    ds.Modality = "CR"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    r = read_radiograph(ds, voi="none")
    assert any("Modality LUT (LUT sequence)" in step for step in r.applied)


def test_voi_lut_sequence_choice_is_explicit() -> None:
    ds = pydicom.dcmread(sample_file("vlut_04.dcm"))
    ds.Modality = "CR"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    with_lut = read_radiograph(ds, voi="first")
    without = read_radiograph(ds, voi="none")
    assert any("VOI LUT sequence item 0" in s for s in with_lut.applied)
    assert not any(s.startswith("VOI") for s in without.applied)
    assert with_lut.shape == without.shape


def test_window_selection_by_index_and_sigmoid() -> None:
    ds = small_radiograph()
    ds.WindowCenter = [300, 600]
    ds.WindowWidth = [200, 800]
    first = read_radiograph(ds, voi=0)
    second = read_radiograph(ds, voi=1)
    assert not np.array_equal(first.image, second.image)
    ds.VOILUTFunction = "SIGMOID"
    sig = read_radiograph(ds, voi=0)
    assert any("SIGMOID" in s for s in sig.applied)
    with pytest.raises(InputError, match="VOI index 5"):
        read_radiograph(ds, voi=5)


def test_bits_stored_masking_and_padding() -> None:
    ds = small_radiograph()
    arr = ds.pixel_array.copy()
    arr[0, 0] = 0
    arr[5:10, 5:10] = 1023
    ds.PixelPaddingValue = 1023
    ds.PixelData = arr.tobytes()
    clean = read_radiograph(copy.deepcopy(ds), voi="none")
    garbage = arr | np.uint16(0xF000)  # overlay/garbage bits above BitsStored (10)
    ds.PixelData = garbage.tobytes()
    r = read_radiograph(ds, voi="none")
    np.testing.assert_array_equal(r.image, clean.image)
    assert (r.image[5:10, 5:10] == 0).all()
    assert any("PixelPaddingValue" in s for s in r.applied)


def test_spacing_sources() -> None:
    # RG1 has PixelSpacing 0\0 (invalid) and no other spacing
    rg1 = read_radiograph(sample_file("RG1_UNCI.dcm"), default_spacing_mm=0.2)
    assert rg1.spacing_source is SpacingSource.ASSUMED and rg1.pixel_spacing_mm == (0.2, 0.2)
    ds = small_radiograph()
    ds.ImagerPixelSpacing = [0.3, 0.3]
    ds.EstimatedRadiographicMagnificationFactor = 1.2
    r = read_radiograph(ds)
    assert r.spacing_source is SpacingSource.IMAGER_PIXEL_SPACING
    assert r.pixel_spacing_mm == pytest.approx((0.25, 0.25))
    ds.PixelSpacing = [0.14, 0.14]
    assert read_radiograph(ds).spacing_source is SpacingSource.PIXEL_SPACING


def test_metadata_for_later_stages() -> None:
    ds = small_radiograph()
    ds.PatientAge = "045Y"
    ds.PatientSex = "F"
    r = read_radiograph(ds)
    assert r.patient_age_years == 45 and r.patient_sex == "F"
    assert r.modality == "CR" and r.sop_instance_uid == ds.SOPInstanceUID
    assert r.body_part == "EXTREMITY" and r.view_position == "AP"
    ds.PatientAge = "006M"
    assert patient_age_years(ds) == pytest.approx(0.5)


def test_multiframe_gives_one_radiograph_per_frame() -> None:
    ds = small_radiograph(64)
    frame = ds.pixel_array
    ds.NumberOfFrames = 3
    ds.PixelData = np.stack([frame, frame[::-1], frame[:, ::-1]]).astype(np.uint16).tobytes()
    frames = read_radiographs(ds)
    assert [f.frame_index for f in frames] == [0, 1, 2]
    np.testing.assert_array_equal(frames[1].image, frames[0].image[::-1])


def test_not_dicom_truncated_and_bomb(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(NotDicomError, match=r"notes\.txt") as refused:
        read_radiograph(text)
    assert "(5 bytes)" in str(refused.value) and "force=True" not in str(refused.value)
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(NotDicomError, match=r"the file is empty \(0 bytes\)"):
        read_radiograph(empty)
    with pytest.raises(NotDicomError, match="no such file"):
        read_radiograph(tmp_path / "missing.dcm")
    ds = small_radiograph()
    ds.PixelData = ds.PixelData[:1000]
    with pytest.raises(TruncatedPixelDataError, match=r"declares"):
        read_radiograph(ds)
    ds = small_radiograph()
    ds.Rows, ds.Columns = 60000, 60000
    with pytest.raises(ImageTooLargeError):
        read_radiograph(ds)


def test_199_deep_nested_sequences_are_nesting_too_deep(tmp_path: Path) -> None:
    ds = small_radiograph(32)
    item = Dataset()
    item.CodeMeaning = "leaf"
    for _ in range(198):
        outer = Dataset()
        outer.ContentSequence = Sequence([item])
        item = outer
    ds.ContentSequence = Sequence([item])  # 199 levels
    path = tmp_path / "deep.dcm"
    try:
        ds.save_as(path, enforce_file_format=True)
    except RecursionError:
        pytest.skip("pydicom cannot even write this nesting here")
    with pytest.raises(NestingTooDeepError, match="nested more than 32 deep"):
        read_radiograph(path)
    with pytest.raises(NestingTooDeepError):
        read_radiograph(ds)  # an in-memory Dataset is checked too


def test_recursion_in_the_parser_becomes_nesting_too_deep(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "x.dcm"
    path.write_bytes(b"\0" * 132)

    def boom(*args: object, **kwargs: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(pydicom, "dcmread", boom)
    with pytest.raises(NestingTooDeepError, match="nested too deeply"):
        read_radiograph(path)


def test_constant_image_is_refused() -> None:
    ds = small_radiograph(32)
    ds.PixelData = np.full((32, 32), 7, np.uint16).tobytes()
    with pytest.raises(CorruptDicomError, match="constant"):
        read_radiograph(copy.deepcopy(ds))


def test_spacing_fall_through_rules() -> None:
    ds = small_radiograph(32)
    del ds.ImagerPixelSpacing
    ds.NominalScannedPixelSpacing = [0.2, 0.25]
    r = read_radiograph(ds)
    assert r.spacing_source is SpacingSource.NOMINAL_SCANNED and r.pixel_spacing_mm == (0.2, 0.25)
    for bad in ([0, 0], [-0.1, 0.1], [50, 50], [0.1]):  # zero, negative, absurd, wrong multiplicity
        ds.PixelSpacing = bad
        ds.ImagerPixelSpacing = bad
        assert read_radiograph(ds).spacing_source is SpacingSource.NOMINAL_SCANNED
    del ds.NominalScannedPixelSpacing
    r = read_radiograph(ds)
    assert r.spacing_source is SpacingSource.ASSUMED and r.pixel_spacing_mm == (0.15, 0.15)
    ds.ImagerPixelSpacing = [0.2, 0.2]
    ds.EstimatedRadiographicMagnificationFactor = 40  # absurd: ignored (treated as 1)
    assert read_radiograph(ds).pixel_spacing_mm == (0.2, 0.2)


@pytest.mark.filterwarnings("ignore:Invalid value for VR AS")
def test_more_metadata_laterality_intent_manufacturer() -> None:
    ds = small_radiograph(32)
    ds.Laterality = "R"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = "ACME"
    ds.PatientAge = "012W"
    r = read_radiograph(ds)
    assert r.laterality == "R" and r.presentation_intent == "FOR PRESENTATION" and r.manufacturer == "ACME"
    assert r.patient_age_years == pytest.approx(12 / 52.1775)
    ds.ImageLaterality = "L"  # the image-level attribute wins
    assert read_radiograph(ds).laterality == "L"
    ds.PatientAge = "45"  # not a valid AS value
    assert read_radiograph(ds).patient_age_years is None


def test_decoder_and_pipeline_steps_are_recorded_in_order() -> None:
    r = read_radiograph(sample_file("RG3_J2KR.dcm"))
    assert r.applied[0] == "decoded JPEG 2000 Image Compression (Lossless Only) with pylibjpeg"
    assert [s.split(" ")[0] for s in r.applied[1:]] == ["VOI", "scaled", "MONOCHROME1", "spacing"]


def test_modality_lut_values_match_pydicom() -> None:
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(sample_file("mlut_18.dcm"))
    expected = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    ds.Modality = "CR"  # a Secondary Capture labelled CR: a digitised film
    r = read_radiograph(ds, voi="none")
    np.testing.assert_allclose(r.image, expected, atol=1e-6)


def test_voi_lut_values_match_pydicom_and_windows_are_numbered_after_luts() -> None:
    from pydicom.pixels import apply_voi

    ds = pydicom.dcmread(sample_file("vlut_04.dcm"))
    expected = apply_voi(ds.pixel_array, ds, index=0).astype(np.float64)
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    ds.Modality = "CR"
    np.testing.assert_allclose(read_radiograph(copy.deepcopy(ds)).image, expected, atol=1e-6)
    ds.WindowCenter, ds.WindowWidth = [100, 60], [80, 40]  # 1 LUT + 2 windows: items 0, 1, 2
    assert "VOI LUT sequence item 0" in read_radiograph(copy.deepcopy(ds), voi=0).applied
    assert read_radiograph(copy.deepcopy(ds), voi=2).applied[1].startswith("VOI window 1 (LINEAR, centre 60")
    with pytest.raises(InputError, match="VOI index 3"):
        read_radiograph(copy.deepcopy(ds), voi=3)


def test_invalid_arguments_are_config_errors() -> None:
    from calcdx.errors import ConfigError

    ds = small_radiograph(32)
    for voi in ("last", -1, 1.5, True):
        with pytest.raises(ConfigError, match='"voi"'):
            read_radiograph(ds, voi=voi)  # type: ignore[arg-type]
    for spacing in (0, -1, 20, float("nan")):
        with pytest.raises(ConfigError, match='"default_spacing_mm"'):
            read_radiograph(ds, default_spacing_mm=spacing)


def test_acceptance_rules_for_secondary_capture_and_other_projection_classes() -> None:
    ds = small_radiograph(32)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
    ds.Modality = "DX"
    assert read_radiograph(ds).modality == "DX"
    ds.Modality = "OT"
    with pytest.raises(NotRadiographError, match="Secondary Capture Image Storage"):
        read_radiograph(ds)
    for sop in ("1.2.840.10008.5.1.4.1.1.1.2", "1.2.840.10008.5.1.4.1.1.1.3", "1.2.840.10008.5.1.4.1.1.1.1.1"):
        ds.SOPClassUID, ds.Modality = sop, "DX"  # mammography, intra-oral, DX for processing
        assert read_radiograph(ds).sop_class_uid == sop
    ds.SOPClassUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.1", "CT"  # CR class, CT modality: conflicting
    with pytest.raises(NotRadiographError, match="conflicting"):
        read_radiograph(ds)


def test_bomb_guards_are_configurable_and_checked_before_decoding() -> None:
    ds = small_radiograph(64)
    with pytest.raises(ImageTooLargeError, match=r"64x64x1 pixels .* limits of 4,095 pixels"):
        read_radiograph(ds, max_pixels=4_095)
    with pytest.raises(ImageTooLargeError, match=r"\(8,192 bytes\) .* 8,191 bytes"):
        read_radiograph(ds, max_bytes=8_191)
    ds.PixelData = b""  # would fail decoding: the guard must fire first
    ds.NumberOfFrames = 100_000
    with pytest.raises(ImageTooLargeError):
        read_radiograph(ds)


def test_padding_range_limit_and_frame_choice() -> None:
    ds = small_radiograph(64)
    arr = ds.pixel_array.copy()
    arr[:4] = 1000
    arr[4:8] = 1010
    ds.PixelPaddingValue, ds.PixelPaddingRangeLimit = 1000, 1010
    ds.PixelData = arr.tobytes()
    r = read_radiograph(ds, voi="none")
    assert (r.image[:8] == 0).all() and r.image[8:].max() == 1.0
    frame = arr
    ds.NumberOfFrames = 2
    ds.PixelData = np.stack([frame, frame[::-1]]).tobytes()
    second = read_radiograph(ds, frame=1, voi="none")
    assert second.frame_index == 1
    with pytest.raises(InputError, match="frame 2 requested"):
        read_radiograph(ds, frame=2)


def test_caller_dataset_pixels_are_not_modified() -> None:
    ds = small_radiograph(32)
    before = ds.pixel_array.copy()
    read_radiograph(ds)
    np.testing.assert_array_equal(ds.pixel_array, before)
