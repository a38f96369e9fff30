"""Robustness: non-DICOM blobs and a seeded corpus of mutated real files only ever raise typed errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import JPEG2000Lossless, RLELossless

from calcdx.datasets.reader import read_radiographs
from calcdx.errors import CalcdxError, InputError
from tests.reader_fixtures import sample_file, small_radiograph, write_variant

pytestmark = pytest.mark.fuzz


def _blobs(rng: np.random.Generator) -> list[bytes]:
    png = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(png, format="PNG")
    blobs = [b"", b"DICM", png.getvalue(), b"\0" * 128 + b"DICM", b"\0" * 132]
    while len(blobs) < 500:
        kind = len(blobs) % 3
        n = int(rng.integers(1, 4096))
        if kind == 0:
            blobs.append(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
        elif kind == 1:
            blobs.append((f"lorem ipsum {n} " * (n // 16 + 1)).encode()[:n])
        else:
            blobs.append(png.getvalue()[: max(8, n % len(png.getvalue()))] + rng.bytes(n % 64))
    return blobs


@pytest.mark.timeout(300)
def test_500_non_dicom_blobs_are_500_typed_refusals(tmp_path: Path) -> None:
    rng = np.random.default_rng(500)
    refused = 0
    for i, blob in enumerate(_blobs(rng)):
        path = tmp_path / f"blob{i}.bin"
        path.write_bytes(blob)
        with pytest.raises(InputError):
            read_radiographs(path)
        refused += 1
    assert refused == 500


def _seed_files(tmp_path: Path) -> list[bytes]:
    ds = small_radiograph(48)
    out = []
    for name, syntax in (("plain", ds.file_meta.TransferSyntaxUID), ("rle", RLELossless), ("j2k", JPEG2000Lossless)):
        out.append(write_variant(ds, syntax, tmp_path / f"seed_{name}.dcm").read_bytes())
    for name in ("rtplan.dcm", "CT_small.dcm"):
        out.append(Path(sample_file(name)).read_bytes())
    return out


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    buf = bytearray(data)
    kind = int(rng.integers(0, 5))
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
    # length fields set to huge values
    pos = int(rng.integers(128, min(len(buf) - 4, 1200)))
    buf[pos:pos + 4] = b"\xff\xff\xff\x7f"
    return bytes(buf)


@pytest.mark.timeout(900)
def test_5000_mutated_real_files_raise_only_typed_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(2026)
    seeds = _seed_files(tmp_path)
    accepted = refused = 0
    path = tmp_path / "mutant.dcm"
    for i in range(5000):
        path.write_bytes(_mutate(seeds[i % len(seeds)], rng))
        try:
            frames = read_radiographs(path)
        except CalcdxError:
            refused += 1
            continue
        except Exception as exc:  # pragma: no cover - the failure we are looking for
            pytest.fail(f"mutant {i}: {type(exc).__name__} outside the error hierarchy: {exc}")
        accepted += 1
        for r in frames:
            assert r.image.dtype == np.float32
            assert np.isfinite(r.image).all()
            assert r.image.min() >= 0.0 and r.image.max() <= 1.0
            assert r.image.max() > r.image.min()
            assert r.image.shape == r.shape
    assert accepted + refused == 5000
    assert accepted > 100 and refused > 100
