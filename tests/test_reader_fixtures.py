"""Broken DICOM files kept as fixtures (tests/fixtures/reader, built by make_fixtures.py): each one
is refused with its stable error code and a message naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calcdx.datasets.reader import header_only, read_radiograph
from calcdx.errors import CalcdxError
from tests.fixtures.reader.make_fixtures import EXPECTED

FIXTURES = Path(__file__).parent / "fixtures" / "reader"


def test_every_fixture_is_present_and_tiny() -> None:
    present = {p.name for p in FIXTURES.glob("*.dcm")}
    assert present == set(EXPECTED)
    assert all((FIXTURES / name).stat().st_size < 16_384 for name in EXPECTED)


@pytest.mark.parametrize(("name", "code"), sorted(EXPECTED.items()))
def test_fixture_gets_its_code(name: str, code: str) -> None:
    path = FIXTURES / name
    if code == "accepted":
        r = read_radiograph(path)
        assert r.image.dtype == np.float32 and r.shape == (16, 16)
        return
    with pytest.raises(CalcdxError) as info:
        read_radiograph(path)
    assert info.value.code == code, info.value
    assert name in str(info.value)
    assert info.value.as_dict()["path"] == str(path)


@pytest.mark.parametrize("name", ["nested_40_deep.dcm", "nested_300_deep.dcm"])
def test_deep_nesting_is_refused_by_header_reads_too(name: str) -> None:
    # discovery and the PACS node read headers only: the nesting guard applies there as well
    with pytest.raises(CalcdxError) as info:
        header_only(FIXTURES / name)
    assert info.value.code == "E_NESTING"


def test_nesting_depth_below_the_limit_is_fine(tmp_path: Path) -> None:
    from tests.fixtures.reader.make_fixtures import nested

    path = tmp_path / "nested_8.dcm"
    path.write_bytes(nested(8))
    assert read_radiograph(path).shape == (16, 16)
