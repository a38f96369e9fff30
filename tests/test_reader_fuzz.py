"""Robustness: non-DICOM blobs and a seeded corpus of mutated real files only ever raise typed errors.

Seeds are real files kept small so 5,000 mutants run in well under two minutes on one core:
pydicom-data's RG3 radiograph downsampled to 48 px in seven transfer syntaxes, pydicom's three
16 px CRs (rescale + window + ImagerPixelSpacing), and two non-radiographs (an RT plan full of
sequences, a CT).  Mutations: truncation, byte flips anywhere, byte flips in the header,
inserted/deleted chunks, huge length fields, and header values set to absurd values through
pydicom (Rows, BitsStored, windows, rescale, padding, frames, photometric, syntax, ...).
"""

from __future__ import annotations

import io
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from PIL import Image
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from calcdx.datasets.reader import header_only, read_radiographs
from calcdx.errors import CalcdxError, InputError
from tests.reader_fixtures import sample_file, small_radiograph, write_variant

pytestmark = [pytest.mark.fuzz, pytest.mark.filterwarnings("ignore")]

N_MUTANTS = 5000
SLOWEST_ALLOWED_S = 20.0
"""One mutant taking longer than this is a hang (a JPEG-LS header claiming 40,000 px once took 44 s)."""


def _blobs(rng: np.random.Generator) -> list[bytes]:
    png = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(png, format="PNG")
    blobs = [b"", b"DICM", png.getvalue(), b"\0" * 128 + b"DICM", b"\0" * 132, b"\0" * 128 + b"DICM" + b"\xff" * 64]
    while len(blobs) < 500:
        kind = len(blobs) % 4
        n = int(rng.integers(1, 4096))
        if kind == 0:
            blobs.append(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
        elif kind == 1:
            blobs.append((f"lorem ipsum {n} " * (n // 16 + 1)).encode()[:n])
        elif kind == 2:
            blobs.append(png.getvalue()[: max(8, n % len(png.getvalue()))] + rng.bytes(n % 64))
        else:  # a preamble and prefix followed by garbage: looks like DICOM for 132 bytes
            blobs.append(b"\0" * 128 + b"DICM" + rng.bytes(n))
    return blobs


@pytest.mark.timeout(300)
def test_500_non_dicom_blobs_are_500_typed_refusals(tmp_path: Path) -> None:
    rng = np.random.default_rng(500)
    codes: Counter[str] = Counter()
    for i, blob in enumerate(_blobs(rng)):
        path = tmp_path / f"blob{i}.dcm"
        path.write_bytes(blob)
        with pytest.raises(InputError) as info:
            read_radiographs(path)
        codes[info.value.code] += 1
    assert sum(codes.values()) == 500
    assert codes["E_NOT_DICOM"] >= 370  # everything without a DICOM meta header; the rest E_CORRUPT/E_TRUNCATED


def _seed_files(tmp_path: Path) -> list[bytes]:
    ds = small_radiograph(48)
    out = []
    for syntax in (ds.file_meta.TransferSyntaxUID, ImplicitVRLittleEndian, ExplicitVRBigEndian,
                   DeflatedExplicitVRLittleEndian, RLELossless, JPEGLSLossless, JPEG2000Lossless):
        out.append(write_variant(ds, syntax, tmp_path / f"seed_{syntax.keyword}.dcm").read_bytes())
    crs = Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests" / "77654033"
    out.extend(p.read_bytes() for p in sorted(crs.glob("CR*/*")) if p.is_file())
    for name in ("rtplan.dcm", "CT_small.dcm"):
        out.append(Path(sample_file(name)).read_bytes())
    return out


ABSURD: dict[str, list[object]] = {
    "Rows": [0, 1, 47, 49, 65535],
    "Columns": [0, 3, 65535],
    "BitsAllocated": [0, 1, 7, 12, 32, 64],
    "BitsStored": [0, 1, 15, 16, 17, 40],
    "HighBit": [0, 31],
    "PixelRepresentation": [1, 2],
    "SamplesPerPixel": [0, 3, 4],
    "PhotometricInterpretation": ["RGB", "YBR_FULL", "PALETTE COLOR", "MONOCHROME3", ""],
    "NumberOfFrames": [0, 2, 1_000_000, -1],
    "WindowCenter": [0, -1e9, 1e30],
    "WindowWidth": [0, -5, 1e-30, 1e30],
    "VOILUTFunction": ["SIGMOID", "LINEAR_EXACT", "CUBIC"],
    "RescaleSlope": [0, -1, 1e30, 1e-30],
    "RescaleIntercept": [-1e30, 1e30],
    "PixelPaddingValue": [0, 65535],
    "PixelSpacing": [[0, 0], [-1, 1], [1e9, 1e9]],
    "ImagerPixelSpacing": [[0, 0], [0.1, -0.1]],
    "EstimatedRadiographicMagnificationFactor": [0, -2, 1e9],
    "Modality": ["CT", "", "DX"],
    "SOPClassUID": ["1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.7", "", "1.2.3"],
    "PatientAge": ["", "999Y", "abc", "000D"],
}


def _corrupt_value(data: bytes, rng: np.random.Generator) -> bytes:
    """Parse a (valid) seed, set one header attribute to an absurd value, write it back."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception:
        return data
    for _ in range(int(rng.integers(1, 3))):
        keyword = list(ABSURD)[int(rng.integers(0, len(ABSURD)))]
        values = ABSURD[keyword]
        try:
            setattr(ds, keyword, values[int(rng.integers(0, len(values)))])
        except Exception:  # pydicom refused the value itself
            continue
    if rng.random() < 0.1:
        ds.file_meta.TransferSyntaxUID = [JPEG2000Lossless, RLELossless, ExplicitVRBigEndian][int(rng.integers(0, 3))]
    buffer = io.BytesIO()
    try:
        ds.save_as(buffer, enforce_file_format=False)
    except Exception:
        return data
    return buffer.getvalue()


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    buf = bytearray(data)
    kind = int(rng.integers(0, 6))
    if kind == 0:  # truncate
        return bytes(buf[: int(rng.integers(0, len(buf)))])
    if kind == 1:  # flip bytes anywhere
        for _ in range(int(rng.integers(1, 20))):
            buf[int(rng.integers(0, len(buf)))] = int(rng.integers(0, 256))
        return bytes(buf)
    if kind == 2:  # corrupt the header region (tags, VRs, lengths)
        for _ in range(int(rng.integers(1, 8))):
            buf[int(rng.integers(128, min(len(buf), 1200)))] = int(rng.integers(0, 256))
        return bytes(buf)
    if kind == 3:  # insert or delete a chunk
        pos = int(rng.integers(0, len(buf)))
        if rng.random() < 0.5:
            return bytes(buf[:pos] + rng.bytes(int(rng.integers(1, 64))) + buf[pos:])
        return bytes(buf[:pos] + buf[pos + int(rng.integers(1, 64)):])
    if kind == 4:  # header values set to absurd values
        return _corrupt_value(data, rng)
    # length fields set to huge values
    pos = int(rng.integers(128, min(len(buf) - 4, 1200)))
    buf[pos:pos + 4] = b"\xff\xff\xff\x7f"
    return bytes(buf)


@pytest.mark.timeout(900)
def test_5000_mutated_real_files_raise_only_typed_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(2026)
    seeds = _seed_files(tmp_path)
    codes: Counter[str] = Counter()
    slowest = 0.0
    path = tmp_path / "mutant.dcm"
    for i in range(N_MUTANTS):
        path.write_bytes(_mutate(seeds[i % len(seeds)], rng))
        start = time.perf_counter()
        try:
            frames = read_radiographs(path)
        except CalcdxError as exc:
            codes[exc.code] += 1
            continue
        except BaseException as exc:  # pragma: no cover - the failure we are looking for
            pytest.fail(f"mutant {i}: {type(exc).__name__} outside the error hierarchy: {exc}")
        finally:
            slowest = max(slowest, time.perf_counter() - start)
        codes["accepted"] += 1
        header = header_only(path)
        declared = (int(header.Rows), int(header.Columns))
        assert len(frames) == int(header.get("NumberOfFrames", 1) or 1)
        for r in frames:
            assert r.image.dtype == np.float32, i
            assert r.shape == declared, i
            assert np.isfinite(r.image).all(), i
            assert 0.0 <= float(r.image.min()) < float(r.image.max()) <= 1.0, i  # in range, non-constant
    assert sum(codes.values()) == N_MUTANTS
    assert codes["accepted"] > 500, codes
    assert len(codes) >= 5, codes  # the refusals spread over many typed codes
    assert slowest < SLOWEST_ALLOWED_S, f"a mutant took {slowest:.1f} s"
    print(f"\n{N_MUTANTS} mutants: {dict(sorted(codes.items()))}; slowest {slowest:.2f} s")


def test_a_mutant_from_each_seed_is_still_readable_unmutated(tmp_path: Path) -> None:
    """The seeds themselves: the radiographs are accepted, the RT plan and CT refused."""
    seeds = _seed_files(tmp_path)
    results = []
    for i, data in enumerate(seeds):
        path = tmp_path / f"s{i}.dcm"
        path.write_bytes(data)
        try:
            read_radiographs(path)
            results.append("accepted")
        except CalcdxError as exc:
            results.append(exc.code)
    assert results == ["accepted"] * (len(seeds) - 2) + ["E_NOT_RADIOGRAPH"] * 2


