"""Fit the filter that makes a JPEG 2000 low-pass band look like an area-averaged image.

    python benchmarks/j2k_levels_fit.py DICOM_FOLDER [--max-files 30]

Discarding r JPEG 2000 resolution levels gives the 5/3 wavelet's low-pass band: centred on every 2**r-th
stored pixel and less smooth than the 2**r x 2**r area average (``cv2.INTER_AREA``) the model grid is
otherwise made with.  For each file this script J2K-encodes the stored values losslessly, decodes them at
levels 1 and 2, and fits, by least squares over all files, one separable 5-tap filter per level that maps
the band onto the area average.  It prints the taps (``BOX_MATCH_TAPS`` in
``calcdx.datasets.j2k_levels``) and the residual before and after, in units of each image's standard
deviation.  Fit them on images that are not the ones you later evaluate on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import openjpeg
import pydicom
from scipy.optimize import least_squares

from calcdx.datasets.j2k_levels import pillow_decode


def pairs(folder: Path, max_files: int) -> dict[int, list[tuple[np.ndarray, np.ndarray]]]:
    """(band, area average) per level, both divided by the image's standard deviation."""
    out: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {1: [], 2: []}
    for path in sorted(folder.glob("*.dcm"))[:max_files]:
        ds = pydicom.dcmread(path)
        stored = ds.pixel_array
        codestream = openjpeg.encode(stored, bits_stored=int(ds.BitsStored), use_mct=False)
        full = stored.astype(np.float32)
        scale = float(full.std()) or 1.0
        for level in (1, 2):
            try:
                band = pillow_decode(bytes(codestream), level).astype(np.float32)
            except (OSError, ValueError):
                continue  # Pillow refuses some level/size combinations
            step = 1 << level
            rows, cols = full.shape[0] // step, full.shape[1] // step
            area = cv2.resize(full[:rows * step, :cols * step], (cols, rows), interpolation=cv2.INTER_AREA)
            out[level].append((band[:rows, :cols] / scale, area / scale))
    return out


def filtered(image: np.ndarray, taps: np.ndarray) -> np.ndarray:
    kernel = np.asarray(taps, np.float32)
    return cv2.sepFilter2D(image, -1, kernel, kernel, borderType=cv2.BORDER_REFLECT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--max-files", type=int, default=30)
    args = parser.parse_args()
    data = pairs(args.folder, args.max_files)
    for level, items in data.items():
        if not items:
            print(f"level {level}: no file decoded at this level")
            continue

        def residual(taps: np.ndarray, items: list = items) -> np.ndarray:
            # every third pixel, 8 px in from the edges: enough samples, borders excluded
            return np.concatenate([(filtered(b, taps) - a)[8:-8:3, 8:-8:3].ravel() for b, a in items])

        before = residual(np.array([0, 0, 1, 0, 0], np.float64))
        fit = least_squares(residual, np.array([0, 0, 1, 0, 0], np.float64))
        print(f"level {level}: {len(items)} images, rms {np.sqrt(np.mean(before ** 2)):.4f} -> "
              f"{np.sqrt(np.mean(fit.fun ** 2)):.4f} (image std = 1); taps {tuple(round(float(t), 4) for t in fit.x)}")


if __name__ == "__main__":
    main()
