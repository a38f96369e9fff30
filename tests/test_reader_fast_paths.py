"""The reader's float32 rescale and LINEAR window give the image pydicom's float64 functions give."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest

import calcdx.datasets.pixels as pixels
from calcdx.datasets.reader import read_radiograph
from tests.reader_fixtures import small_radiograph

TOLERANCE = 1e-5
"""float32 against float64: a window 64x wider than the data stretches float32 rounding to 4e-6 of
the image range; a 16-bit display step is 1.5e-5."""
EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.dcm"))


def _through_pydicom(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pixels, "_modality_values", lambda raw, ds: (pixels.apply_modality_lut(raw, ds), False))
    monkeypatch.setattr(pixels, "_linear_window", lambda *args, **kwargs: None)


def _variants() -> list[tuple[str, pydicom.Dataset]]:
    base = small_radiograph()
    out = [("plain", base)]
    for name, changes in {
        "rescaled": {"RescaleSlope": 0.5, "RescaleIntercept": 300},
        "window": {"WindowCenter": 500, "WindowWidth": 300},
        "rescaled window": {"RescaleSlope": 2, "RescaleIntercept": 7, "WindowCenter": 900, "WindowWidth": 1200},
        "second window": {"WindowCenter": [300, 600], "WindowWidth": [200, 800]},
        "wide window": {"WindowCenter": 512, "WindowWidth": 65536},
        "width 1 (pydicom decides)": {"WindowCenter": 500, "WindowWidth": 1},
        "sigmoid (pydicom)": {"WindowCenter": 500, "WindowWidth": 300, "VOILUTFunction": "SIGMOID"},
        "monochrome1": {"PhotometricInterpretation": "MONOCHROME1", "WindowCenter": 400, "WindowWidth": 500},
    }.items():
        ds = copy.deepcopy(base)
        for keyword, value in changes.items():
            setattr(ds, keyword, value)
        out.append((name, ds))
    signed = copy.deepcopy(base)
    arr = signed.pixel_array.astype(np.int16) - 512
    signed.PixelRepresentation = 1
    signed.PixelData = arr.tobytes()
    signed.WindowCenter, signed.WindowWidth = 0, 600
    out.append(("signed", signed))
    return out


@pytest.mark.parametrize("voi", ["first", 1])
def test_fast_paths_equal_pydicom_on_synthetic_files(voi: str | int, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, ds in _variants():
        if voi == 1 and name != "second window":
            continue
        fast = read_radiograph(copy.deepcopy(ds), voi=voi)
        with monkeypatch.context() as patched:
            _through_pydicom(patched)
            slow = read_radiograph(copy.deepcopy(ds), voi=voi)
        np.testing.assert_allclose(fast.image, slow.image, atol=TOLERANCE, err_msg=name)
        assert fast.applied == slow.applied, name


def test_fast_paths_equal_pydicom_on_the_bundled_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    assert EXAMPLES
    fast = [read_radiograph(p) for p in EXAMPLES]
    _through_pydicom(monkeypatch)
    for path, image in zip(EXAMPLES, fast, strict=True):
        slow = read_radiograph(path)
        np.testing.assert_allclose(image.image, slow.image, atol=TOLERANCE, err_msg=path.name)
        assert image.applied == slow.applied


def test_the_rescale_never_changes_the_decoded_frame() -> None:
    ds = small_radiograph()
    ds.WindowCenter, ds.WindowWidth = 500, 300
    raw = ds.pixel_array.copy()
    geometry = pixels.check_geometry(ds, "<test>")
    frame = ds.pixel_array
    pixels.to_display(frame, ds, "<test>", geometry)
    np.testing.assert_array_equal(frame, raw)
