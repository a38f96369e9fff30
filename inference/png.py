"""PNG encoding of the overlays' RGB pictures, deflated by ISA-L.

Every row gets PNG's "up" filter (its difference from the row above, one numpy pass) and the rows are
deflated by ISA-L (``isal``) at its level 1.  On a 1284 x 910 overlay: 4.5 ms and 436 kB, against 22 ms
and 400 kB through OpenCV's libpng (the same filter, zlib level 1, run-length strategy) and 73 ms with
Pillow.  The chunks (signature, IHDR, IDAT, IEND) follow the PNG specification (ISO/IEC 15948); Pillow
and OpenCV read the pixels back unchanged (tests).
"""

from __future__ import annotations

import struct

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
FILTER_NONE, FILTER_UP = 0, 2
LEVEL = 1


def encode_rgb(rgb: np.ndarray) -> bytes:
    """``rgb`` (rows, cols, 3) uint8 as PNG bytes: 8 bits per sample, truecolour, not interlaced.

    Raises:
        ValueError: anything but a non-empty (rows, cols, 3) uint8 array.
    """
    from isal import isal_zlib

    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
        raise ValueError(f"expected a non-empty (rows, cols, 3) uint8 picture, got {rgb.dtype} {rgb.shape}")
    rows, cols = rgb.shape[:2]
    samples = np.ascontiguousarray(rgb).reshape(rows, cols * 3)
    filtered = np.empty((rows, cols * 3 + 1), np.uint8)
    filtered[0, 0], filtered[0, 1:] = FILTER_NONE, samples[0]
    filtered[1:, 0] = FILTER_UP
    np.subtract(samples[1:], samples[:-1], out=filtered[1:, 1:])  # modulo 256, as the filter is defined
    header = struct.pack(">IIBBBBB", cols, rows, 8, 2, 0, 0, 0)  # depth 8, colour type 2 (RGB)
    return b"".join((SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", isal_zlib.compress(filtered, LEVEL)),
                     _chunk(b"IEND", b"")))


def _chunk(kind: bytes, body: bytes) -> bytes:
    from isal import isal_zlib

    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", isal_zlib.crc32(body, isal_zlib.crc32(kind)))
