"""JPEG 2000 decoded at a reduced resolution level: the low-pass band of the wavelet pyramid.

A JPEG 2000 codestream stores the image as a wavelet pyramid; discarding ``r`` resolution levels yields
the image at 1/2**r of its size per side without entropy-decoding the detail bands, which hold most of
the coded data (ISO/IEC 15444-1, resolution scalability).  The model works on a 0.4 mm grid while
detectors sample at 0.1-0.2 mm, so inference needs only the coarser levels: one level decodes a
lossless simulated radiograph about 4 x faster than the full image (see docs/inference.md).

Pillow's OpenJPEG decoder does it (``Jpeg2KImageFile.reduce``).  It refuses some level and size
combinations outright ("broken data stream", before any decoding, well under a millisecond), so the
next lower level is tried in turn; ``None`` tells the caller to decode the full image instead.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from calcdx.datasets.codestream import j2k_size

J2K_REDUCIBLE_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"})
"""JPEG 2000 (lossless only) and JPEG 2000 (lossless or lossy): decoded by Pillow's OpenJPEG."""
MAX_LEVELS = 5


@dataclass(frozen=True, slots=True)
class CodestreamHeader:
    """What the SIZ and COD segments of a JPEG 2000 main header declare (first component)."""

    rows: int
    columns: int
    components: int
    precision: int
    signed: bool
    offset: tuple[int, int]
    decomposition_levels: int

    @property
    def handled(self) -> bool:
        """One unsigned component of at most 16 bits and no image offset: what ``pillow_decode`` reads."""
        return self.components == 1 and not self.signed and self.precision <= 16 and self.offset == (0, 0)


def read_header(codestream: bytes) -> CodestreamHeader | None:
    """The SIZ / COD facts of a raw codestream (a JP2 box is searched too), else None."""
    size = j2k_size(codestream)
    soc = codestream.find(b"\xff\x4f\xff\x51", 0, 4096)
    if size is None or len(codestream) < soc + 46:
        return None
    # after SOC, SIZ, Lsiz, Rsiz (8 bytes): Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz XTOsiz YTOsiz (4 each) Csiz(2) Ssiz(1)
    xosiz, yosiz = struct.unpack_from(">II", codestream, soc + 16)
    (components,) = struct.unpack_from(">H", codestream, soc + 40)
    ssiz = codestream[soc + 42]
    cod = codestream.find(b"\xff\x52", soc + 4, soc + 4096)
    if cod < 0 or len(codestream) < cod + 10:
        return None
    # COD(2) Lcod(2) Scod(1) SGcod(4) SPcod: decomposition levels(1) ...
    return CodestreamHeader(rows=size[0], columns=size[1], components=components, precision=(ssiz & 0x7F) + 1,
                            signed=bool(ssiz & 0x80), offset=(yosiz, xosiz), decomposition_levels=codestream[cod + 9])


def levels_for_spacing(spacing_mm: tuple[float, float], coarsest_mm: float, *, limit: int = MAX_LEVELS) -> int:
    """How many levels can be discarded while the pixel spacing stays at or below ``coarsest_mm``."""
    finest = max(spacing_mm)
    levels = 0
    while levels < limit and finest * 2 ** (levels + 1) <= coarsest_mm * (1 + 1e-9):
        levels += 1
    return levels


def reduced_shape(rows: int, columns: int, levels: int) -> tuple[int, int]:
    """Image size after discarding ``levels`` levels (ceil division, as the standard defines it)."""
    step = 1 << levels
    return (-(-rows // step), -(-columns // step))


def pillow_decode(codestream: bytes, levels: int) -> np.ndarray:
    """Decode with Pillow at ``levels`` discarded levels, returning the stored values as written.

    Pillow scales samples of precision p to the full range of its mode (``v << (16 - p)`` for "I;16",
    ``v << (8 - p)`` for "L"); that shift is undone here.

    Raises:
        ValueError: a codestream this function does not handle (several components, signed samples,
            precision above 16, an image offset).
        OSError: Pillow or OpenJPEG refused or failed to decode it.
    """
    header = read_header(codestream)
    if header is None:
        raise ValueError("no JPEG 2000 SIZ/COD header")
    if not header.handled:
        raise ValueError(f"not handled: {header}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the reader's own limits apply
        with Image.open(io.BytesIO(codestream)) as picture:
            if picture.mode not in ("I;16", "L"):
                raise ValueError(f"unexpected Pillow mode {picture.mode}")
            picture.reduce = levels
            picture.load()
            values = np.array(picture)
    bits = 16 if values.dtype.itemsize == 2 else 8
    if header.precision < bits:
        values >>= bits - header.precision
    return values


BOX_MATCH_TAPS: dict[int, tuple[float, ...]] = {
    1: (-0.0082, 0.0178, 0.7393, 0.241, 0.01),
    2: (-0.0046, 0.022, 0.6635, 0.3374, -0.0184),
}
"""Separable 5-tap filters (centre third) that map the low-pass band after discarding 1 or 2 levels onto
the 2x2 or 4x4 area average: the band's samples sit on every 2**r-th stored pixel, the average's between
them (hence the asymmetry: about 3/4-1/4 and 5/8-3/8 linear interpolation), and the band passes more
noise.  Least-squares fits by ``benchmarks/j2k_levels_fit.py`` on 30 simulated radiographs at native
spacing (``calcdx simulate --n 30 --seed 77``; residual 0.067 -> 0.041 and 0.070 -> 0.033 image standard
deviations at levels 1 and 2); deeper levels use the level-2 filter."""


def box_matched(values: np.ndarray, levels: int) -> np.ndarray:
    """``values`` (unsigned integers, a band after discarding ``levels`` levels) filtered to approximate
    the area average of 2**levels x 2**levels blocks of the full image; same dtype, rounded."""
    taps = np.asarray(BOX_MATCH_TAPS[min(levels, 2)], np.float32)
    smooth = cv2.sepFilter2D(values.astype(np.float32), -1, taps, taps, borderType=cv2.BORDER_REFLECT)
    return np.clip(np.rint(smooth), 0, np.iinfo(values.dtype).max).astype(values.dtype)


def decode_reduced(codestream: bytes, rows: int, columns: int, levels: int) -> tuple[np.ndarray, int] | None:
    """Stored values at the coarsest of ``levels`` .. 1 discarded levels that decodes, and that level.

    Returns None (decode the full image instead) when no level from ``levels`` down to 1 decodes to
    the expected size, or the codestream is of a kind ``pillow_decode`` does not handle.
    """
    header = read_header(codestream)
    if header is None or (header.rows, header.columns) != (rows, columns) or not header.handled:
        return None
    for level in range(min(levels, header.decomposition_levels), 0, -1):
        try:
            values = pillow_decode(codestream, level)
        except (OSError, ValueError, SyntaxError):
            continue
        if values.shape == reduced_shape(rows, columns, level):
            return values, level
    return None
