"""An overlay's labels: Pillow's plain text with a black outline that looks like its ``stroke_width``."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from calcdx.inference.overlay import TEXT_OUTLINE_PX, outlined_text


def test_outlined_text_looks_like_pillows_stroke() -> None:
    font = ImageFont.load_default(size=16)
    text = "1. Calcific tendinopathy (HADD) 0.93 (definite) 12x5 mm, supraspinatus tendon"
    grey = Image.new("RGB", (900, 60), (128, 128, 128))
    ours, pillows = grey.copy(), grey.copy()
    outlined_text(ours, (10.4, 20.0), text, font, (255, 200, 0))
    ImageDraw.Draw(pillows).text((10, 20), text, fill=(255, 200, 0), font=font, stroke_width=TEXT_OUTLINE_PX,
                                 stroke_fill=(0, 0, 0))
    a, b = np.asarray(ours, np.int16), np.asarray(pillows, np.int16)
    # the glyphs in their colour where Pillow draws them, the outline black around them
    fill_ours, fill_pillows = (a == (255, 200, 0)).all(2), (b == (255, 200, 0)).all(2)
    assert (fill_ours & fill_pillows).sum() >= 0.95 * fill_pillows.sum() > 500
    dark_ours, dark_pillows = a.max(2) < 40, b.max(2) < 40
    assert (dark_ours & dark_pillows).sum() / (dark_ours | dark_pillows).sum() > 0.8
    # drawn where Pillow draws: no change outside the stroked text's box
    touched = (a != 128).any(2) | (b != 128).any(2)
    rows, cols = np.nonzero(touched)
    assert rows.min() >= 20 - TEXT_OUTLINE_PX - 1 and cols.min() >= 10 - TEXT_OUTLINE_PX - 1
    assert np.abs(a - b).mean() < 2.5


def test_outlined_text_at_the_edges_and_empty() -> None:
    """A label that runs off the picture is clipped, an empty one draws nothing."""
    font = ImageFont.load_default(size=14)
    picture = Image.new("RGB", (200, 100), (128, 128, 128))
    outlined_text(picture, (-10, -10), "edge label", font, (255, 0, 0))
    outlined_text(picture, (180, 90), "edge label", font, (255, 0, 0))
    assert picture.size == (200, 100) and (np.asarray(picture) != 128).any()
    blank = Image.new("RGB", (50, 50), (128, 128, 128))
    outlined_text(blank, (10, 10), "", font, (255, 0, 0))
    assert (np.asarray(blank) == 128).all()
