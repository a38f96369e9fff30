"""Real DICOM inputs for the reader tests: pydicom's and pydicom-data's test files, and small
radiographs derived from them (downsampled RG3 lower leg) in every common transfer syntax."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)


def sample_file(name: str) -> str:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is a download-only pydicom test file")
    return str(path)


def small_radiograph(size: int = 128) -> Dataset:
    """RG3 (a real CR of the lower leg) downsampled to ``size`` px, 10 bits, MONOCHROME1."""
    ds = pydicom.dcmread(sample_file("RG3_UNCI.dcm"))
    arr = ds.pixel_array
    step = arr.shape[0] // size
    small = np.ascontiguousarray(arr[: step * size: step, : step * size: step][:size, :size]).astype(np.uint16)
    out = copy.deepcopy(ds)
    out.Rows, out.Columns = small.shape
    out.PixelData = small.tobytes()
    out.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out.ImagerPixelSpacing = [0.15 * step, 0.15 * step]
    return out


def write_variant(ds: Dataset, syntax: str, path: Path) -> Path:
    """Write ``ds`` in transfer syntax ``syntax`` (compressing with pydicom's encoders)."""
    out = copy.deepcopy(ds)
    if syntax in (RLELossless, JPEGLSLossless, JPEG2000Lossless):
        out.compress(syntax)
    elif syntax == ExplicitVRBigEndian:  # pydicom's save_as will not switch endianness: swap and force
        out.PixelData = np.frombuffer(out.PixelData, "<u2").byteswap().tobytes()
        out.file_meta.TransferSyntaxUID = syntax
        out.file_meta.MediaStorageSOPClassUID = out.SOPClassUID
        out.file_meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
        out.preamble = b"\0" * 128
        pydicom.dcmwrite(path, out, implicit_vr=False, little_endian=False, force_encoding=True)
        return path
    else:
        out.file_meta.TransferSyntaxUID = syntax
    out.save_as(path, enforce_file_format=True)
    return path


LOSSLESS_SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian,
                     DeflatedExplicitVRLittleEndian, RLELossless, JPEGLSLossless, JPEG2000Lossless)
