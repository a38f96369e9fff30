"""A picture of the simulator: one row per pattern (and negatives), one column per region, masks outlined."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import binary_dilation

from calcdx.datasets.simulator.dataset import SimulationConfig, render_case
from calcdx.taxonomy import PATTERNS, Pattern, Region

TILE = (240, 300)  # width, height of one tile (px)


def _tile(seed: int, region: Region, pattern: Pattern | None, spacing_mm: float) -> Image.Image:
    cfg = SimulationConfig(regions=(region,), patterns=(pattern,) if pattern else PATTERNS, spacing_mm=spacing_mm,
                           positive_fraction=1.0 if pattern else 0.0)
    for index in range(200):
        case = render_case(seed, index, cfg)
        if pattern is None or pattern in case.labels:
            break
    rgb = np.repeat((case.image * 255).astype(np.uint8)[..., None], 3, axis=2)
    for lesion, mask in zip(case.lesions, case.masks, strict=False):
        edge = binary_dilation(mask, iterations=2) & ~mask
        rgb[edge] = (255, 60, 60) if lesion.is_pattern else (60, 160, 255)
    img = Image.fromarray(rgb)
    img.thumbnail(TILE)
    canvas = Image.new("RGB", TILE, (0, 0, 0))
    canvas.paste(img, ((TILE[0] - img.width) // 2, 0))
    return canvas


def make_gallery(out_png: str | Path, seed: int = 7, spacing_mm: float = 0.3) -> Path:
    """Write the gallery PNG (red = pattern mask, blue = hard negative) and return its path."""
    rows = [*PATTERNS, None]
    regions = list(Region)
    label_w = 170
    sheet = Image.new("RGB", (label_w + TILE[0] * len(regions), 24 + TILE[1] * len(rows)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for j, region in enumerate(regions):
        draw.text((label_w + j * TILE[0] + 8, 6), region.value, fill=(0, 0, 0))
    for i, pattern in enumerate(rows):
        draw.text((6, 24 + i * TILE[1] + TILE[1] // 2), pattern.value if pattern else "no pattern\n(hard negatives)",
                  fill=(0, 0, 0))
        for j, region in enumerate(regions):
            sheet.paste(_tile(seed + i, region, pattern, spacing_mm), (label_w + j * TILE[0], 24 + i * TILE[1]))
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
