"""Pixel decoding and display transforms for radiographs (pydicom's own LUT functions).

Order, as PS3.4 defines the greyscale pipeline: stored values -> BitsStored mask ->
Modality LUT (rescale or LUT sequence) -> VOI LUT (window or LUT sequence, chosen by
``voi``) -> scale to [0, 1] -> MONOCHROME1 inversion so that bright = dense.  Padding
pixels (PixelPaddingValue / PixelPaddingRangeLimit) are set to 0 (background) at the end.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.uid import UID

from calcdx.errors import (
    CorruptDicomError,
    ImageTooLargeError,
    TruncatedPixelDataError,
    UndecodableError,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 150_000_000
"""Decompression-bomb guard: rows x columns x frames above this are refused before decoding."""
MAX_SIDE = 16_384
UNSAFE_PLUGINS = frozenset({"gdcm"})


@dataclass(frozen=True, slots=True)
class PixelGeometry:
    rows: int
    columns: int
    frames: int
    bits_allocated: int
    bits_stored: int


def check_geometry(ds: Dataset, source: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> PixelGeometry:
    """Validate the image header before any decoding.

    Raises:
        CorruptDicomError: missing or impossible Rows/Columns/Bits values.
        ImageTooLargeError: more pixels than ``max_pixels`` or a side above 16,384.
    """
    try:
        rows = int(ds.Rows)
        columns = int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        bits_allocated = int(ds.BitsAllocated)
        bits_stored = int(ds.get("BitsStored", bits_allocated) or bits_allocated)
    except (AttributeError, TypeError, ValueError) as exc:
        raise CorruptDicomError(f"image header incomplete or invalid ({exc})", path=source) from exc
    if rows <= 0 or columns <= 0 or frames <= 0:
        raise CorruptDicomError(f"impossible image size {rows}x{columns}x{frames}", path=source)
    if bits_allocated not in (1, 8, 16, 32, 64) or not 1 <= bits_stored <= bits_allocated:
        raise CorruptDicomError(
            f"impossible bit depth (BitsAllocated {bits_allocated}, BitsStored {bits_stored})", path=source
        )
    if rows > MAX_SIDE or columns > MAX_SIDE or rows * columns * frames > max_pixels:
        raise ImageTooLargeError(
            f"{rows}x{columns}x{frames} pixels exceeds the limit of {max_pixels:,} "
            f"(and {MAX_SIDE} per side); refusing to decode",
            path=source,
        )
    return PixelGeometry(rows, columns, frames, bits_allocated, bits_stored)


def decode(ds: Dataset, source: str, geometry: PixelGeometry) -> np.ndarray:
    """Decode the stored values: (frames, rows, cols) array.

    Raises:
        TruncatedPixelDataError: fewer native pixel bytes than the header declares, or a
            compressed stream that ends early.
        UndecodableError: no installed decoder for the transfer syntax (names what is missing).
        CorruptDicomError: the decoder failed for another reason.
    """
    tsyntax = UID(str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2"))) if hasattr(
        ds, "file_meta") else UID("1.2.840.10008.1.2")
    if "PixelData" in ds and not tsyntax.is_compressed:
        expected = (geometry.rows * geometry.columns * geometry.frames * geometry.bits_allocated + 7) // 8
        actual = len(ds.PixelData)
        if actual < expected:
            raise TruncatedPixelDataError(
                f"pixel data has {actual:,} bytes, the header declares {expected:,}", path=source
            )
    if tsyntax.is_compressed:
        try:
            decoder = get_decoder(tsyntax)
        except NotImplementedError as exc:
            raise UndecodableError(f"no pixel decoder exists for transfer syntax {tsyntax.name}",
                                   path=source) from exc
        if not decoder.is_available:
            missing = "; ".join(f"{k}: {', '.join(v)}" for k, v in decoder.missing_dependencies.items()) \
                if isinstance(decoder.missing_dependencies, dict) else str(decoder.missing_dependencies)
            raise UndecodableError(
                f"transfer syntax {tsyntax.name} needs a decoder that is not installed ({missing})", path=source
            )
    plugins: list[str] = [""]
    if tsyntax.is_compressed:
        # GDCM aborts the whole process on some corrupt JPEG 2000 streams (seen in fuzzing):
        # decode with the pylibjpeg / pillow / pyjpegls plugins only, GDCM never in-process.
        plugins = [p for p in decoder.available_plugins if p not in UNSAFE_PLUGINS] or []
        if not plugins:
            raise UndecodableError(
                f"transfer syntax {tsyntax.name}: only {', '.join(decoder.available_plugins)} can decode it here, "
                "which calcdx does not run on untrusted input; install pylibjpeg-openjpeg / pylibjpeg-libjpeg",
                path=source)
    arr = None
    last: BaseException | None = None
    for plugin in plugins:
        try:
            if plugin:
                ds.pixel_array_options(decoding_plugin=plugin)
            arr = ds.pixel_array
            break
        except (KeyboardInterrupt, SystemExit):
            raise
        except (MemoryError, OverflowError) as exc:
            raise ImageTooLargeError(f"pixel data too large to decode ({exc})", path=source) from exc
        except BaseException as exc:  # decoders raise many types (Rust decoders even panic)
            last = exc
    if arr is None:
        text = str(last)
        if tsyntax.is_compressed and any(w in text.lower() for w in ("truncat", "end of", "insufficient",
                                                                       "not enough", "premature")):
            raise TruncatedPixelDataError(f"compressed pixel data ends early ({text})", path=source) from last
        raise CorruptDicomError(f"pixel data could not be decoded as {tsyntax.name}: {text}", path=source) from last
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.ndim != 3 or arr.shape[1:] != (geometry.rows, geometry.columns):
        raise CorruptDicomError(
            f"decoded shape {arr.shape} does not match the header ({geometry.rows}x{geometry.columns})",
            path=source,
        )
    return arr


def padding_mask(raw: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """Boolean mask of padding pixels (PixelPaddingValue [..RangeLimit]) or None."""
    if "PixelPaddingValue" not in ds:
        return None
    try:
        value = int(ds.PixelPaddingValue)
        limit = int(ds.get("PixelPaddingRangeLimit", value))
    except (TypeError, ValueError):
        return None
    lo, hi = min(value, limit), max(value, limit)
    mask = (raw >= lo) & (raw <= hi)
    return mask if mask.any() else None


def mask_bits_stored(raw: np.ndarray, ds: Dataset, geometry: PixelGeometry) -> tuple[np.ndarray, bool]:
    """Clear bits above BitsStored in unsigned integer data (overlay bits, garbage)."""
    if raw.dtype.kind != "u" or geometry.bits_stored >= raw.dtype.itemsize * 8:
        return raw, False
    limit = (1 << geometry.bits_stored) - 1
    if raw.max(initial=0) <= limit:
        return raw, False
    return raw & raw.dtype.type(limit), True


def voi_index(ds: Dataset, voi: str | int) -> int | None:
    """Which VOI transform to apply: None for none, else the index into the window/LUT items.

    ``voi="first"`` applies the first VOI LUT Sequence item if present, else the first
    window; ``"none"`` applies none (linear scaling of modality values); an int picks that
    item.
    """
    has_lut = "VOILUTSequence" in ds and len(ds.VOILUTSequence) > 0
    has_window = "WindowCenter" in ds and "WindowWidth" in ds
    if voi == "none" or not (has_lut or has_window):
        return None
    if voi == "first":
        return 0
    if isinstance(voi, int) and voi >= 0:
        return voi
    raise ValueError(f'Argument "voi" should be "first", "none" or a non-negative int, got {voi!r}')


def to_display(frame: np.ndarray, ds: Dataset, source: str, geometry: PixelGeometry, *,
               voi: str | int = "first") -> tuple[np.ndarray, tuple[str, ...]]:
    """One stored frame -> float32 [0, 1], bright = dense; returns the steps applied."""
    applied: list[str] = []
    raw, masked = mask_bits_stored(frame, ds, geometry)
    if masked:
        applied.append(f"BitsStored mask ({geometry.bits_stored} bits)")
    pad = padding_mask(raw, ds)
    if "ModalityLUTSequence" in ds:
        applied.append("Modality LUT (LUT sequence)")
    elif "RescaleSlope" in ds or "RescaleIntercept" in ds:
        applied.append(f"Modality LUT (rescale slope {ds.get('RescaleSlope', 1)}, "
                       f"intercept {ds.get('RescaleIntercept', 0)})")
    values = apply_modality_lut(raw, ds)
    index = voi_index(ds, voi)
    if index is not None:
        values = _apply_voi(values, ds, index, source, applied)
    values = np.asarray(values, dtype=np.float64)
    valid = values[~pad] if pad is not None else values
    if valid.size == 0 or not np.isfinite(valid).all():
        raise CorruptDicomError("pixel values are not finite after the LUTs", path=source)
    lo, hi = float(valid.min()), float(valid.max())
    if hi <= lo:
        raise CorruptDicomError("image is constant (every pixel has the same value)", path=source)
    image = ((values - lo) / (hi - lo)).astype(np.float32)
    np.clip(image, 0.0, 1.0, out=image)
    applied.append("scaled to [0, 1] by min/max of non-padding pixels")
    if str(ds.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1":
        image = 1.0 - image
        applied.append("MONOCHROME1 inverted (bright = dense)")
    if pad is not None:
        image[pad] = 0.0
        applied.append(f"PixelPaddingValue {int(ds.PixelPaddingValue)} set to background")
    return image, tuple(applied)


def _apply_voi(values: np.ndarray, ds: Dataset, index: int, source: str, applied: list[str]) -> np.ndarray:
    n_luts = len(ds.VOILUTSequence) if "VOILUTSequence" in ds else 0
    centers = ds.get("WindowCenter")
    n_windows = len(centers) if centers is not None and hasattr(centers, "__len__") and not isinstance(
        centers, str) else (1 if centers is not None else 0)
    if index >= max(n_luts, n_windows):
        raise CorruptDicomError(f"VOI index {index} requested but the file has {n_luts} LUT(s) and "
                                f"{n_windows} window(s)", path=source)
    try:
        out = apply_voi_lut(values, ds, index=index, prefer_lut=True)
    except Exception as exc:
        logger.warning("%s: VOI transform failed (%s); using modality values", source, exc)
        applied.append(f"VOI skipped: {exc}")
        return values
    if n_luts > index:
        applied.append(f"VOI LUT sequence item {index}")
    else:
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        applied.append(f"VOI window {index} ({function})")
    return np.asarray(out, dtype=np.float64)
