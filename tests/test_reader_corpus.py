"""Every DICOM test file that ships with pydicom and pydicom-data through the reader: only the real
radiographs are accepted, everything else gets a typed refusal naming what it is; real JPEG-family
and multi-frame streams (relabelled as radiographs) decode through the safe plugins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.dataset import Dataset

from calcdx.datasets.reader import decoder_of, read_radiographs
from calcdx.errors import CalcdxError, NotRadiographError
from tests.reader_fixtures import sample_file

DX = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation


def _all_test_files() -> list[Path]:
    """The locally installed test files (pydicom's test_files and pydicom-data), recursively.

    Listed from the folders: ``get_testdata_files`` would try to download the download-only
    files, and nothing may be downloaded at test time.
    """
    roots = [Path(pydicom.data.__file__).parent / "test_files"]
    try:
        import data_store  # pydicom-data

        roots.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    return sorted(p for root in roots for p in root.rglob("*") if p.is_file())


@pytest.mark.timeout(300)
def test_whole_pydicom_corpus_only_radiographs_accepted() -> None:
    files = _all_test_files()
    assert len(files) > 100
    accepted: list[str] = []
    for path in files:
        try:
            frames = read_radiographs(path)
        except CalcdxError:
            continue
        accepted.append(path.name)
        for r in frames:
            assert r.image.dtype == np.float32 and np.isfinite(r.image).all()
            assert 0.0 <= float(r.image.min()) < float(r.image.max()) <= 1.0
    # pydicom-data's RG1/RG3 radiographs and the three 16 px CRs of pydicom's DICOMDIR test set
    expected = [p.name for p in files if p.name.startswith(("RG1_", "RG3_"))] + ["6154", "6247", "6278"]
    assert sorted(accepted) == sorted(expected)


def test_small_real_crs_use_rescale_window_and_imager_spacing() -> None:
    root = Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests" / "77654033"
    (r,) = read_radiographs(root / "CR1" / "6154")
    assert r.spacing_source.value == "ImagerPixelSpacing" and r.pixel_spacing_mm == (0.1, 0.1)
    assert r.applied[1].startswith("Modality LUT (rescale") and r.applied[2].startswith("VOI window 0")


@pytest.mark.parametrize(
    ("name", "modality"),
    [("CT_small.dcm", "CT"), ("MR_small.dcm", "MR"), ("US1_UNCR.dcm", "US"), ("JPEG-LL.dcm", "NM"),
     ("liver.dcm", "SEG"), ("rtdose.dcm", "RTDOSE"), ("reportsi.dcm", "SR"), ("waveform_ecg.dcm", "ECG"),
     ("emri_small.dcm", "MR"), ("eCT_Supplemental.dcm", "CT")],
)
def test_other_objects_are_refused_naming_their_modality(name: str, modality: str) -> None:
    with pytest.raises(NotRadiographError) as info:
        read_radiographs(sample_file(name))
    assert f"(modality {modality})" in info.value.reason


@pytest.mark.parametrize("name", ["SC_rgb.dcm", "SC_ybr_full_uncompressed.dcm", "US1_J2KR.dcm",
                                  "OBXXXX1A.dcm"])
def test_colour_and_palette_images_are_refused_even_labelled_cr(name: str) -> None:
    ds = pydicom.dcmread(sample_file(name))
    ds.Modality, ds.SOPClassUID = "CR", "1.2.840.10008.5.1.4.1.1.1"
    with pytest.raises(NotRadiographError, match="colour image"):
        read_radiographs(ds)


def _as_radiograph(name: str, sop_class: str | None = None) -> Dataset:
    ds = pydicom.dcmread(sample_file(name))
    ds.Modality = "CR"  # a Secondary Capture labelled CR is accepted (a digitised film)
    if sop_class:
        ds.SOPClassUID = sop_class
    return ds


@pytest.mark.parametrize("name", ["JPEG-LL.dcm", "JPGExtended.dcm", "JPEG2000.dcm", "JPEGLSNearLossless_16.dcm"])
def test_real_jpeg_family_streams_decode_without_gdcm(name: str) -> None:
    ds = _as_radiograph(name)
    (r,) = read_radiographs(ds)
    assert r.shape == (int(ds.Rows), int(ds.Columns))
    assert decoder_of(r) in {"pylibjpeg", "pyjpegls", "pillow"}
    assert float(r.image.std()) > 0.01


def test_jpeg_lossless_equals_pydicoms_own_decoding() -> None:
    ds = _as_radiograph("JPEG-LL.dcm")
    raw = pydicom.dcmread(sample_file("JPEG-LL.dcm")).pixel_array.astype(np.float64)
    (r,) = read_radiographs(ds, voi="none")
    expected = (raw - raw.min()) / (raw.max() - raw.min())
    np.testing.assert_allclose(r.image, expected, atol=1e-6)


def test_multiframe_real_file_in_five_transfer_syntaxes_decodes_identically() -> None:
    names = ["emri_small.dcm", "emri_small_RLE.dcm", "emri_small_big_endian.dcm",
             "emri_small_jpeg_2k_lossless.dcm", "emri_small_jpeg_ls_lossless.dcm"]
    stacks = []
    for name in names:
        frames = read_radiographs(_as_radiograph(name, DX), voi="none")
        assert [f.frame_index for f in frames] == list(range(10))
        stacks.append(np.stack([f.image for f in frames]))
    for name, stack in zip(names[1:], stacks[1:], strict=True):
        np.testing.assert_array_equal(stack, stacks[0], err_msg=name)


def test_corrupt_real_files_get_typed_errors() -> None:
    with pytest.raises(CalcdxError) as info:
        read_radiographs(_as_radiograph("MR_truncated.dcm", DX))
    assert info.value.code == "E_TRUNCATED"
    # an item delimiter inside the JPEG 2000 SIZ segment: the codestream claims 3.7 billion columns
    with pytest.raises(CalcdxError) as info:
        read_radiographs(_as_radiograph("JPEG2000-embedded-sequence-delimiter.dcm"))
    assert info.value.code == "E_CORRUPT" and "declares" in info.value.reason
