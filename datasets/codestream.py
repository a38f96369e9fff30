"""Compressed-frame guard: the image size a JPEG / JPEG-LS / JPEG 2000 codestream declares.

A decoder allocates what the *codestream* declares, not what the DICOM header says: a
48 x 48 radiograph whose JPEG-LS frame header claims 40,000 x 40,000 px made pylibjpeg
try to allocate gigabytes and spend 44 s failing.  ``check_codestreams`` reads the frame
headers (SOF / SIZ markers, a few bytes each) and refuses a mismatch before any decoding.
JPEG and JPEG-LS headers are parsed by pydicom's own parser; the JPEG 2000 SIZ segment
(ISO/IEC 15444-1 A.5.1) is read here because pydicom's public helper omits the size.
"""

from __future__ import annotations

import logging
import struct

from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import UID

from calcdx.errors import CorruptDicomError

logger = logging.getLogger(__name__)

try:  # private in pydicom 3.0 (used by its own decoders); absent -> JPEG checks skipped
    from pydicom.pixels.utils import _get_jpg_parameters
except ImportError:  # pragma: no cover - other pydicom versions
    _get_jpg_parameters = None

JPEG_FAMILY_PREFIX = "1.2.840.10008.1.2.4."
J2K_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
                          "1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93",
                          "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
                          "1.2.840.10008.1.2.4.203"})


def j2k_size(codestream: bytes) -> tuple[int, int] | None:
    """(rows, columns) from a JPEG 2000 SIZ segment (raw codestream or JP2 box), else None."""
    offset = codestream.find(b"\xff\x4f\xff\x51", 0, 4096)
    if offset < 0 or len(codestream) < offset + 24:
        return None
    # SOC(2) SIZ(2) Lsiz(2) Rsiz(2) Xsiz(4) Ysiz(4) XOsiz(4) YOsiz(4)
    xsiz, ysiz, xosiz, yosiz = struct.unpack_from(">IIII", codestream, offset + 8)
    return (ysiz - yosiz, xsiz - xosiz)


def jpeg_size(codestream: bytes) -> tuple[int, int] | None:
    """(rows, columns) from a JPEG or JPEG-LS SOF segment, else None."""
    if _get_jpg_parameters is None:
        return None
    try:
        info = _get_jpg_parameters(codestream)
    except Exception:  # a corrupt header is the decoder's to report
        return None
    if "height" not in info or "width" not in info:
        return None
    return (int(info["height"]), int(info["width"]))


def check_codestreams(ds: Dataset, source: str, tsyntax: UID, rows: int, columns: int, frames: int) -> None:
    """Refuse compressed frames whose codestream declares another size than the header.

    A JPEG height of 0 (size given later in a DNL segment) is accepted.

    Raises:
        CorruptDicomError: a frame declares a size other than ``rows`` x ``columns``.
    """
    if not str(tsyntax).startswith(JPEG_FAMILY_PREFIX) or "PixelData" not in ds:
        return
    reader = j2k_size if str(tsyntax) in J2K_SYNTAXES else jpeg_size
    try:
        stream = generate_frames(ds.PixelData, number_of_frames=frames)
        for index, frame in enumerate(stream):
            size = reader(frame)
            if size is None:
                continue
            declared_rows, declared_cols = size
            if declared_cols != columns or declared_rows not in (rows, 0):
                raise CorruptDicomError(
                    f"frame {index}: the {tsyntax.name} codestream declares {declared_rows}x{declared_cols} px "
                    f"but the header says {rows}x{columns}; refusing to decode",
                    path=source,
                )
            if index + 1 >= frames:
                break
    except CorruptDicomError:
        raise
    except Exception as exc:  # broken encapsulation: the decoder reports it with more detail
        logger.debug("%s: codestream check skipped (%s)", source, exc)
